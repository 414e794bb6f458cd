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

    def _fresh_clients(self) -> Any:
        # A copy (``model_copy(update=...)`` may change the endpoint or a secret) never
        # shares its original's clients.
        self._clients, self._clients_pid, self._clients_lock = {}, 0, threading.Lock()
        return self

    def __copy__(self) -> Any:
        return super().__copy__()._fresh_clients()

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Any:
        memo = {} if memo is None else memo
        memo[id(self._clients)] = {}  # clients are not deep-copied (most cannot be)
        memo[id(self._clients_lock)] = None
        return super().__deepcopy__(memo)._fresh_clients()

    def __getstate__(self) -> dict[Any, Any]:
        state: dict[Any, Any] = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        private.update(_clients={}, _clients_pid=0, _clients_lock=None)
        state["__pydantic_private__"] = private
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._clients_lock = threading.Lock()
