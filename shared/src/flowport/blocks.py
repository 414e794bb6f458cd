"""What every flowport Block shares: clients made lazily, once per process, never pickled."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, PrivateAttr

C = TypeVar("C")


class LazyClients(BaseModel):
    """Mixin for Prefect Blocks (pydantic models): ``self._client("s3", make)`` builds a client
    on first use in this process and reuses it after. Pickling drops the cache, so a block sent
    to another process (Dask worker, subprocess) builds its own clients there.

    A BaseModel itself: pydantic collects private attributes only from model classes (on a
    plain mixin they stayed unset ``ModelPrivateAttr`` objects)."""

    _clients: dict[str, Any] = PrivateAttr(default_factory=dict)
    _clients_pid: int = PrivateAttr(default=0)
    _clients_lock: Any = PrivateAttr(default_factory=threading.Lock)

    def _client(self, name: str, make: Callable[[], C]) -> C:
        with self._clients_lock:
            if self._clients_pid != os.getpid():  # forked or unpickled: start afresh
                self._clients, self._clients_pid = {}, os.getpid()
            if name not in self._clients:
                self._clients[name] = make()
            return self._clients[name]  # type: ignore[no-any-return]

    def _drop_clients(self) -> list[Any]:
        """Forget the cached clients and return them (for the caller to close)."""
        with self._clients_lock:
            clients, self._clients = list(self._clients.values()), {}
        return clients

    def __getstate__(self) -> dict[Any, Any]:
        state: dict[Any, Any] = super().__getstate__()  # type: ignore[assignment]
        private = dict(state.get("__pydantic_private__") or {})
        private.update(_clients={}, _clients_pid=0, _clients_lock=None)
        state["__pydantic_private__"] = private
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        self._clients_lock = threading.Lock()
