"""Object keys and local paths that cannot escape where they belong.

Every store validates keys with :func:`validate_key`; every download into a local directory
goes through :func:`local_path`. A key with ``..`` segments, an absolute path, a NUL or
control character, or a backslash is refused with :class:`InvalidInput`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from flowport.errors import InvalidInput

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_key(key: str, *, system: str = "object store") -> str:
    """Return ``key`` unchanged if it is a safe relative object key, else raise InvalidInput."""
    problem = None
    if not isinstance(key, str) or not key:
        problem = "it is empty"
    elif _CONTROL.search(key):
        problem = "it contains a NUL or control character"
    elif "\\" in key:
        problem = "it contains a backslash"
    elif key.startswith("/") or re.match(r"^[a-zA-Z]:", key):
        problem = "it is an absolute path"
    elif any(part in ("..", ".") for part in key.split("/")):
        problem = "it contains a '.' or '..' segment"
    elif "//" in key:
        problem = "it contains an empty segment ('//')"
    elif len(key.encode()) > 1024:
        problem = "it is longer than 1024 bytes"
    if problem:
        raise InvalidInput(f"{system}: key {key!r} refused: {problem}", system=system, target=key)
    return key


def validate_prefix(prefix: str, *, system: str = "object store") -> str:
    """Like :func:`validate_key` but allows '' and a trailing '/'."""
    if prefix:
        validate_key(prefix.rstrip("/") or "x", system=system)
    return prefix


def join_key(prefix: str, key: str) -> str:
    """``prefix`` + ``key`` with exactly one '/' between them (prefix may be empty)."""
    return f"{prefix.rstrip('/')}/{key}" if prefix else key


def local_path(root: str | os.PathLike[str], key: str, *, system: str = "object store") -> Path:
    """The file under ``root`` that ``key`` maps to; refuses any key that would leave ``root``."""
    validate_key(key, system=system)
    base = Path(root).resolve()
    target = (base / key).resolve()
    if target != base and base not in target.parents:
        raise InvalidInput(
            f"{system}: key {key!r} refused: it resolves outside {base}", system=system, target=key
        )
    return target


def matches(key: str, glob: str | None) -> bool:
    """Glob match where '*' stays within one segment and '**' spans segments."""
    if glob is None:
        return True
    pattern = re.escape(glob).replace(r"\*\*", "\0").replace(r"\*", "[^/]*").replace("\0", ".*")
    pattern = pattern.replace(r"\?", "[^/]")
    return re.fullmatch(pattern, key) is not None
