"""Lineage as Prefect assets: what a flowport task read and wrote, named by URI.

A task declares its lineage by giving its class a ``lineage(self, arguments, result)`` method
returning a :class:`Lineage` (``arguments``: the call's bound arguments; ``result``: what
``run`` returned, ``None`` if it raised). The base class passes it to :func:`report`, which
adds the keys to the task run's Prefect ``AssetContext``, as ``@materialize`` would with keys
known before the call: writes become materializations (``prefect.asset.materialization.
succeeded`` / ``.failed``, the metadata as payload), reads their upstream assets
(``prefect.asset.referenced`` and the materialization's related resources), and tasks that
receive this task's result inherit them. A task without a ``lineage`` method costs nothing.

Keys are URIs built from names only (``s3://bucket/key``, ``postgresql://host:port/db/
schema.table``, ``kafka://brokers/topic``, ``file:///path``): never a user name or password.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from prefect.types.names import MAX_ASSET_KEY_LENGTH, RESTRICTED_ASSET_CHARACTERS

from flowport.secrets import redact

if TYPE_CHECKING:
    from flowport.store import ObjectStore
    from flowport.task import RetryingTask

#: Who Prefect shows as having materialized the assets (``asset-materialized-by``).
MATERIALIZED_BY = "flowport"
#: More URIs than this in one read or write list collapse into their common parent.
MAX_ASSETS = 50

_RESTRICTED = re.compile("[" + re.escape("".join(RESTRICTED_ASSET_CHARACTERS)) + "]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/]*)(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Lineage:
    """What one task call read and wrote (URIs), and metadata about the writes (rows, bytes,
    offsets: JSON values; strings are redacted)."""

    reads: Sequence[str] = ()
    writes: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


def asset_key(uri: str) -> str:
    """``uri`` as a valid Prefect asset key, with no credentials in it.

    The scheme is lowercased and loses its driver (``postgresql+psycopg`` -> ``postgresql``);
    ``user:password@`` is dropped; characters Prefect refuses in keys (space, ``#``, ``?``,
    ``%``, quotes, ...) become ``_`` and a hash of the original keeps the key unique; a key
    longer than Prefect's limit keeps its start and end around a hash of the whole.
    """
    match = _SCHEME.match(uri)
    if match is None:
        raise ValueError("lineage: not a URI (scheme://...); the value is not shown")
    scheme, authority, rest = match.groups()
    scheme = re.sub(r"[^a-z0-9]", "", scheme.lower().split("+", 1)[0])
    authority = authority.rpartition("@")[2]  # no user, no password
    if scheme == "file":
        rest = unquote(rest)  # Path.as_uri() percent-encodes; '%' is not allowed
    key = f"{scheme}://{authority}{rest}"
    if _RESTRICTED.search(key):
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        key = f"{_RESTRICTED.sub('_', key)}~{digest}"
    if len(key) > MAX_ASSET_KEY_LENGTH:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        head = min(len(scheme) + 3 + len(authority), MAX_ASSET_KEY_LENGTH // 4)
        keep = (MAX_ASSET_KEY_LENGTH - len(digest) - 2 - head) // 2
        key = f"{key[: head + keep]}~{digest}~{key[-keep:]}"
    return key


def file_uri(path: str | Path) -> str:
    """``file:///absolute/path`` of a local path."""
    return "file://" + Path(path).resolve().as_posix()


def store_uri(store: ObjectStore, key: str = "") -> str:
    """The URI of ``key`` (or of the store's root, ``s3://bucket[/prefix]``) in ``store``."""
    if key:
        return store.url_for(key)
    return store.url_for("x")[: -len("/x")]


def sql_uri(
    dialect: str,
    host: str | None,
    port: int | None,
    database: str | None,
    table: str,
    schema: str | None = None,
) -> str:
    """``postgresql://host:port/db/schema.table`` (PostgreSQL's default schema: ``public``),
    ``mysql://host:port/db/table`` (a MySQL schema is a database), ``sqlite:///path/table``."""
    dialect = dialect.split("+", 1)[0]
    if dialect == "sqlite":
        name = database or ":memory:"
        path = name if name.startswith(":") else Path(name).resolve().as_posix()
        where = f"/{path.lstrip('/')}"
        return f"sqlite://{where}/{f'{schema}.' if schema and schema != 'main' else ''}{table}"
    address = f"{host or ''}{f':{port}' if port else ''}"
    if dialect in ("mysql", "mariadb"):
        return f"{dialect}://{address}/{schema or database or ''}/{table}"
    if dialect == "postgresql":
        schema = schema or "public"
    qualified = f"{schema}.{table}" if schema else table
    return f"{dialect}://{address}/{database or ''}/{qualified}"


def kafka_uri(brokers: str, topic: str) -> str:
    """``kafka://host:port[,host:port]/topic``."""
    return f"kafka://{brokers.replace(' ', '')}/{topic}"


@functools.singledispatch
def endpoint_uris(endpoint: Any) -> list[str]:
    """The assets a transfer source or sink stands for: its ``uri``. Connectors register
    finer answers (a query's tables, each of several topics) with ``endpoint_uris.register``."""
    return [endpoint.uri]


def collapse(uris: Iterable[str], limit: int = MAX_ASSETS) -> list[str]:
    """``uris`` without duplicates, or, past ``limit``, their deepest common parent (a copy of
    thousands of objects is one asset, its prefix, not thousands of events)."""
    unique = list(dict.fromkeys(uris))
    if len(unique) <= limit:
        return unique
    parent = unique[0].rsplit("/", 1)[0]
    while _SCHEME.match(parent) and not all(u.startswith(parent + "/") for u in unique):
        parent = parent.rsplit("/", 1)[0]
    if _SCHEME.match(parent):
        return [parent]
    return list(dict.fromkeys(_root(u) for u in unique))


def _root(uri: str) -> str:
    """``scheme://authority`` of ``uri``."""
    match = _SCHEME.match(uri)
    return f"{match.group(1)}://{match.group(2)}" if match else uri


def _clean(value: Any) -> Any:
    """Metadata made JSON-safe and secret-free."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    return redact(str(value))


def report(task: RetryingTask, arguments: dict[str, Any], result: Any) -> None:
    """Add ``task``'s lineage for this call to the current Prefect task run's assets.

    Outside a Prefect task run (``task.fn(...)`` in plain Python) there is nothing to report
    to. Lineage only describes a run: a failure to compute it is logged, never raised.
    """
    from prefect.context import AssetContext

    ctx = AssetContext.get()
    if ctx is None:
        return
    try:
        lineage = task.lineage(arguments, result)
        if lineage is None:
            return
        add_to_context(ctx, lineage)
    except Exception as exc:  # the data moved; a lineage bug must not fail the task
        from flowport.progress import run_logger

        run_logger().warning("%s: lineage not reported: %s", task.name, redact(repr(exc)))


def add_to_context(ctx: Any, lineage: Lineage) -> None:
    """Put ``lineage`` into Prefect's ``AssetContext`` ``ctx`` (the one the task engine emits
    asset events from when the run ends)."""
    from prefect.assets import Asset

    reads = [Asset(key=asset_key(u)) for u in collapse(lineage.reads)]
    writes = [Asset(key=asset_key(u)) for u in collapse(lineage.writes)]
    ctx.direct_asset_dependencies.update(a for a in reads if a not in writes)
    if writes:
        ctx.downstream_assets.update(writes)
        ctx.materialized_by = ctx.materialized_by or MATERIALIZED_BY
        metadata = _clean(dict(lineage.metadata))
        for asset in writes:
            ctx.materialization_metadata[asset.key] = {
                **ctx.materialization_metadata.get(asset.key, {}),
                **metadata,
            }
    ctx.update_tracked_assets()  # tasks given this task's result inherit the assets
