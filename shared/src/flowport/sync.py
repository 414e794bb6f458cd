"""Directory sync over any flowport object store: a local directory <-> a key prefix.

The algorithm is the same for every store: list both sides, transfer what is missing or
different (``differs`` decides, so a connector can compare by its own content hash), optionally
delete what the source side does not have, or with ``dry_run`` only report. Downloads refuse
every key that would land outside the local directory before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from flowport.errors import FlowportError, InvalidInput, NotFound
from flowport.keys import join_key, local_path, validate_key, validate_prefix
from flowport.parallel import bounded_map
from flowport.store import ObjectInfo, ObjectStore

#: ``differs(local_path, remote_info_or_None, upload)``: whether the file must be transferred.
DiffersFn = Callable[[Path, ObjectInfo | None, bool], bool]
PutFn = Callable[[Path, str], ObjectInfo]
GetFn = Callable[[str, Path], ObjectInfo]


@dataclass
class SyncResult:
    """What a sync did (or, with ``dry_run``, would do); keys are relative to the prefix."""

    direction: str
    transferred: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes: int = 0
    dry_run: bool = False


def local_files(root: Path) -> dict[str, Path]:
    """Regular files under ``root`` by their posix path relative to it (symlinks not followed)."""
    files: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                files[path.relative_to(root).as_posix()] = path
    return files


def newer(path: Path, info: ObjectInfo, upload: bool, slack: float = 1.0) -> bool:
    """Whether the source side is newer by more than ``slack`` seconds (size already equal);
    an object without a modification time always counts as newer."""
    if info.last_modified is None:
        return True
    remote_time = info.last_modified.timestamp()
    local_time = path.stat().st_mtime
    return local_time > remote_time + slack if upload else remote_time > local_time + slack


def differs(
    path: Path,
    info: ObjectInfo | None,
    upload: bool,
    content: Callable[[Path, ObjectInfo], bool] | None = None,
) -> bool:
    """The comparison every sync uses: a file is transferred when missing on either side, when
    the sizes differ, and then when ``content(path, info)`` says the contents differ or, without
    ``content``, when the source side is newer (a second of slack either way, as some stores
    keep whole seconds)."""
    if info is None or not path.is_file():
        return True
    if path.stat().st_size != info.size:
        return True
    if content is not None:
        return content(path, info)
    return newer(path, info, upload)


def sync_directory(
    store: ObjectStore,
    local_dir: str | os.PathLike[str],
    prefix: str = "",
    *,
    direction: Literal["upload", "download"] | str = "upload",
    delete: bool = False,
    dry_run: bool = False,
    concurrency: int = 4,
    differs: DiffersFn = differs,
    put: PutFn | None = None,
    get: GetFn | None = None,
    listing: Iterable[ObjectInfo] | None = None,
    delete_error: type[FlowportError] = InvalidInput,
    thread_name: str = "flowport-sync",
) -> SyncResult:
    """Make ``prefix`` match ``local_dir`` (upload) or ``local_dir`` match ``prefix`` (download).

    ``differs`` decides whether an existing file must be transferred; ``put(path, key)`` and
    ``get(key, path)`` default to the store's ``put_file`` and ``get_file``; ``listing`` (the
    objects under the prefix, keys as ``store.list`` gives them) defaults to
    ``store.list(prefix)``. ``concurrency`` files move at a time. ``delete`` removes extraneous
    files on the destination side; remote deletions that fail raise ``delete_error``.
    """
    system = store.system
    if direction not in ("upload", "download"):
        raise InvalidInput(
            f"sync direction must be 'upload' or 'download', not {direction!r}", system=system
        )
    validate_prefix(prefix, system=system)
    root = Path(local_dir).resolve()
    base = prefix.strip("/")
    infos = store.list(f"{base}/" if base else "") if listing is None else listing
    remote = {(info.key[len(base) + 1 :] if base else info.key): info for info in infos}
    result = SyncResult(direction, dry_run=dry_run)
    put_file = put or (lambda path, key: store.put_file(path, key))
    get_file = get or (lambda key, path: store.get_file(key, path))

    if direction == "upload":
        if not root.is_dir():
            raise NotFound(f"local directory {root} not found", system="local", target=str(root))
        local = local_files(root)
        for rel in local:
            validate_key(join_key(base, rel), system=system)
        todo = [rel for rel, path in local.items() if differs(path, remote.get(rel), True)]
        extraneous = sorted(set(remote) - set(local)) if delete else []

        def transfer(rel: str) -> int:
            return put_file(local[rel], join_key(base, rel)).size

        def remove() -> None:
            res = store.delete_many(join_key(base, rel) for rel in extraneous)
            if res.errors:
                raise delete_error(
                    f"{system} sync could not delete {len(res.errors)} object(s): "
                    f"{dict(list(res.errors.items())[:5])}",
                    system=system,
                )
    else:
        targets = {rel: local_path(root, rel, system=system) for rel in remote}
        local = local_files(root) if root.is_dir() else {}
        todo = [rel for rel, info in remote.items() if differs(targets[rel], info, False)]
        extraneous = sorted(set(local) - set(remote)) if delete else []

        def transfer(rel: str) -> int:
            info = get_file(join_key(base, rel), targets[rel])
            if info.last_modified is not None:  # equal mtimes: the next sync skips it
                stamp = info.last_modified.timestamp()
                os.utime(targets[rel], (stamp, stamp))
            return info.size

        def remove() -> None:
            for rel in extraneous:
                local_path(root, rel, system="local").unlink(missing_ok=True)

    result.transferred = sorted(todo)
    result.skipped = sorted(set(local if direction == "upload" else remote) - set(todo))
    result.deleted = extraneous
    if dry_run:
        result.bytes = sum(
            local[rel].stat().st_size if direction == "upload" else remote[rel].size for rel in todo
        )
        return result
    result.bytes = sum(bounded_map(result.transferred, transfer, concurrency, thread_name))
    if extraneous:
        remove()
    return result


__all__ = [
    "DiffersFn",
    "SyncResult",
    "differs",
    "local_files",
    "newer",
    "sync_directory",
]
