"""Streaming CSV, JSON Lines and Parquet readers/writers over any :class:`ObjectStore`.

Records travel as Arrow record batches (install ``pip install 'flowport[arrow]'``)::

    from flowport.formats import read_batches, write_batches

    result = write_batches(store, "orders/2024-06-01.parquet", batches, row_group_rows=65_536)
    for batch in read_batches(store, "orders/2024-06-01.parquet", columns=["id", "total"]):
        ...

Writes stream through ``store.put_stream``: Parquet row groups are encoded and sent as they
fill, so memory holds at most one row group, never the file; the store publishes the key only
when the stream ends, so a failure (schema drift, a failing source) leaves nothing at the key.
In CSV and JSON Lines, bytes are written as hex, decimals, dates and times as ISO 8601 text
and durations as integers of their unit; pass ``schema=`` to :func:`read_batches` to get the
original Arrow types back. :func:`arrow_type_for` maps SQLAlchemy column types to Arrow.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import gzip
import io
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from flowport.errors import ConfigError, InvalidInput
from flowport.store import ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("parquet", "csv", "jsonl")
#: Rows per Parquet row group; the writer buffers at most this many rows (64K rows of a
#: typical table: a few MB, which keeps a transfer's peak memory near the client library's).
ROW_GROUP_ROWS = 64 * 1024
#: Rows per batch yielded by :func:`read_batches` (Parquet; CSV/JSONL read in byte blocks).
BATCH_ROWS = 64 * 1024
#: Bytes per CSV / JSON Lines block parsed at a time.
TEXT_BLOCK_BYTES = 4 * 1024 * 1024
#: Objects bigger than this are spooled to a temporary file, not memory, for Parquet reads.
SPOOL_BYTES = 8 * 1024 * 1024
#: Bytes of encoded CSV / JSON Lines gathered before a chunk goes to the store.
TEXT_CHUNK_BYTES = 1024 * 1024

_EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


@dataclass(frozen=True)
class WriteResult:
    """What :func:`write_batches` wrote: the key, row count, bytes sent and format."""

    key: str
    rows: int
    bytes: int
    format: str


def _pyarrow() -> Any:
    """Import pyarrow (and the submodules used here) or say how to install it."""
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.csv
        import pyarrow.json
        import pyarrow.parquet
    except ImportError as exc:
        raise ConfigError(
            f"flowport.formats needs pyarrow: pip install 'flowport[arrow]' ({exc})"
        ) from None
    return pyarrow


def format_for(key: str, fmt: str | None = None) -> str:
    """``fmt`` checked, or the format named by ``key``'s extension (``.gz`` allowed after it)."""
    if fmt is not None:
        value = str(fmt).lower()
        if value not in FORMATS:
            raise InvalidInput(f"format must be one of {FORMATS}, not {fmt!r}", target=key)
        return value
    name = key.rsplit("/", 1)[-1].lower().removesuffix(".gz")
    for ext, value in _EXTENSIONS.items():
        if name.endswith(ext):
            return value
    raise InvalidInput(
        f"cannot tell the format of {key!r} from its extension; pass format= one of {FORMATS}",
        target=key,
    )


# -- SQL types -> Arrow types --------------------------------------------------------------


def arrow_type_for(sql_type: Any, column: str = "?") -> pa.DataType:
    """The Arrow type for a SQLAlchemy column type (instance or class); InvalidInput naming
    ``column`` when Arrow cannot represent it. SQLAlchemy itself is never imported."""
    pa = _pyarrow()
    if isinstance(sql_type, type):
        sql_type = sql_type()
    names = [cls.__name__ for cls in type(sql_type).__mro__]
    first = names[0].upper()

    def fail(why: str) -> InvalidInput:
        return InvalidInput(
            f"column {column!r}: SQL type {sql_type!r} cannot be represented in Arrow ({why}); "
            "CAST it in the query to a text or numeric type",
            target=column,
        )

    if "Boolean" in names:
        return pa.bool_()
    if "Integer" in names:
        if first in ("SMALLINT", "TINYINT", "SMALLINTEGER") or "SmallInteger" in names:
            return pa.uint16() if getattr(sql_type, "unsigned", False) else pa.int16()
        return pa.uint64() if getattr(sql_type, "unsigned", False) else pa.int64()
    if "Float" in names:
        precision = getattr(sql_type, "precision", None)
        if first == "REAL" or (isinstance(precision, int) and precision <= 24):
            return pa.float32()
        return pa.float64()
    if "Numeric" in names or "NumericCommon" in names:
        if getattr(sql_type, "asdecimal", True) is False:
            return pa.float64()
        precision = getattr(sql_type, "precision", None)
        scale = getattr(sql_type, "scale", None)
        if precision is None:  # unconstrained NUMERIC: widest decimal128, values that
            return pa.decimal128(38, 9 if scale is None else scale)  # don't fit fail loudly
        scale = 0 if scale is None else scale
        if precision > 76:
            raise fail(f"precision {precision} exceeds Arrow's maximum of 76")
        return (
            pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
        )
    if "Enum" in names or "String" in names:
        return pa.large_string()
    if "_Binary" in names or "LargeBinary" in names:
        return pa.large_binary()
    if "Interval" in names or "_AbstractInterval" in names:
        return pa.duration("us")
    if "DateTime" in names:
        return (
            pa.timestamp("us", tz="UTC")
            if getattr(sql_type, "timezone", False)
            else pa.timestamp("us")
        )
    if "Date" in names:
        return pa.date32()
    if "Time" in names:
        if getattr(sql_type, "timezone", False):
            raise fail("Arrow has no time-of-day with a time zone")
        return pa.time64("us")
    if "JSON" in names:
        return pa.large_string()
    if "Uuid" in names:
        return pa.string()
    if "ARRAY" in names and getattr(sql_type, "item_type", None) is not None:
        return pa.large_list(arrow_type_for(sql_type.item_type, column))
    impl = getattr(sql_type, "impl_instance", None)  # a TypeDecorator: map what it stores
    if impl is not None and impl is not sql_type:
        return arrow_type_for(impl, column)
    if "NullType" in names:
        raise fail("it has no declared type")
    raise fail("no Arrow equivalent")


def arrow_schema_for(columns: Iterable[Any]) -> pa.Schema:
    """An Arrow schema from SQLAlchemy columns (``.name``, ``.type``, ``.nullable``) or
    ``(name, sql_type)`` pairs."""
    pa = _pyarrow()
    fields = []
    for column in columns:
        if isinstance(column, tuple):
            name, sql_type, nullable = column[0], column[1], True
        else:
            name, sql_type = column.name, column.type
            nullable = bool(getattr(column, "nullable", True))
        fields.append(pa.field(name, arrow_type_for(sql_type, name), nullable=nullable))
    return pa.schema(fields)


# -- writing -------------------------------------------------------------------------------


class _Pipe(io.RawIOBase):
    """A write-only file that keeps what was written until :meth:`drain` takes it."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._pending = 0
        self.total = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._pending += len(chunk)
        self.total += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.total

    @property
    def pending(self) -> int:
        return self._pending

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self._pending = 0
        return data


def _drift(expected: pa.Schema, got: pa.Schema) -> str:
    """The columns that differ between two schemas, as a phrase."""
    exp = {f.name: f.type for f in expected}
    new = {f.name: f.type for f in got}
    parts = [f"{n!r} missing" for n in exp if n not in new]
    parts += [f"{n!r} unexpected" for n in new if n not in exp]
    parts += [f"{n!r} {exp[n]} -> {new[n]}" for n in exp if n in new and exp[n] != new[n]]
    if not parts and list(exp) != list(new):
        parts.append(f"column order {list(exp)} -> {list(new)}")
    return ", ".join(parts)


def _same(expected: pa.Schema, got: pa.Schema) -> bool:
    return bool(
        expected.names == got.names
        and all(a.type == b.type for a, b in zip(expected, got, strict=True))
    )


def _checked(
    batches: Iterable[Any], schema: pa.Schema | None, where: str, fixed: bool
) -> Iterator[tuple[pa.Schema, Any]]:
    """Each batch (tables split into batches) with the schema every batch must match."""
    pa = _pyarrow()
    for item in batches:
        parts = item.to_batches() if isinstance(item, pa.Table) else [item]
        for batch in parts:
            if not isinstance(batch, pa.RecordBatch):
                raise InvalidInput(
                    f"{where}: expected pyarrow RecordBatch or Table, got {type(batch).__name__}",
                    target=where,
                )
            if schema is None:
                schema = batch.schema
            elif not _same(schema, batch.schema):
                origin = "the given schema" if fixed else "the first batch"
                raise InvalidInput(
                    f"{where}: schema drift against {origin}: {_drift(schema, batch.schema)}; "
                    "nothing was written",
                    target=where,
                )
            if batch.schema.metadata != schema.metadata or batch.schema != schema:
                batch = pa.RecordBatch.from_arrays(batch.columns, schema=schema)
            yield schema, batch


def _parquet_chunks(
    batches: Iterable[Any],
    schema: pa.Schema | None,
    where: str,
    row_group_rows: int,
    compression: str | None,
    counter: list[int],
) -> Iterator[bytes]:
    """Encoded Parquet, one chunk per row group as it fills; the footer last."""
    pa = _pyarrow()
    pipe = _Pipe()
    writer: Any = None
    pending: list[Any] = []
    pending_rows = 0

    def flush(table: Any) -> bytes:
        writer.write_table(table, row_group_size=row_group_rows)
        return pipe.drain()

    try:
        for current, batch in _checked(batches, schema, where, schema is not None):
            if writer is None:
                writer = pa.parquet.ParquetWriter(
                    pa.PythonFile(pipe, mode="w"), current, compression=compression or "none"
                )
            schema = current
            if batch.num_rows == 0:
                continue
            counter[0] += batch.num_rows
            pending.append(batch)
            pending_rows += batch.num_rows
            while pending_rows >= row_group_rows:
                table = pa.Table.from_batches(pending, schema=schema)
                pending, pending_rows = [], 0
                head, rest = table.slice(0, row_group_rows), table.slice(row_group_rows)
                if rest.num_rows:
                    pending, pending_rows = rest.to_batches(), rest.num_rows
                del table
                yield flush(head)
                del head, rest
        if writer is None:
            if schema is None:
                raise InvalidInput(
                    f"{where}: no batches to write and no schema= to write an empty Parquet file",
                    target=where,
                )
            writer = pa.parquet.ParquetWriter(
                pa.PythonFile(pipe, mode="w"), schema, compression=compression or "none"
            )
        if pending_rows:
            yield flush(pa.Table.from_batches(pending, schema=schema))
            pending = []
        writer.close()
        writer = None
        if pipe.pending:
            yield pipe.drain()
    finally:
        if writer is not None:
            with contextlib.suppress(Exception):  # already failing; that error matters
                writer.close()


def _text_ready(batch: Any) -> Any:
    """``batch`` with binary as hex text and durations as integers, for CSV / JSON Lines."""
    pa = _pyarrow()
    arrays, fields, changed = [], [], False
    for field, column in zip(batch.schema, batch.columns, strict=True):
        kind = field.type
        if (
            pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)
            or pa.types.is_fixed_size_binary(kind)
        ):
            column = pa.array(
                [None if v is None else v.hex() for v in column.to_pylist()], pa.large_string()
            )
            field, changed = field.with_type(pa.large_string()), True
        elif pa.types.is_duration(kind):
            column, field, changed = column.cast(pa.int64()), field.with_type(pa.int64()), True
        arrays.append(column)
        fields.append(field)
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields)) if changed else batch


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _text_chunks(
    fmt: str,
    batches: Iterable[Any],
    schema: pa.Schema | None,
    where: str,
    compression: str | None,
    counter: list[int],
) -> Iterator[bytes]:
    """Encoded CSV (with a header) or JSON Lines, in chunks of about TEXT_CHUNK_BYTES."""
    pa = _pyarrow()
    pipe = _Pipe()
    out: Any = gzip.GzipFile(fileobj=pipe, mode="wb") if compression == "gzip" else pipe
    writer: Any = None
    for _, batch in _checked(batches, schema, where, schema is not None):
        ready = _text_ready(batch)
        if fmt == "csv":
            if writer is None:
                writer = pa.csv.CSVWriter(pa.PythonFile(out, mode="w"), ready.schema)
            try:
                writer.write_batch(ready)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidInput(f"{where}: cannot write as CSV: {exc}", target=where) from None
        else:
            out.write(
                "".join(
                    json.dumps(row, default=_json_default, ensure_ascii=False) + "\n"
                    for row in ready.to_pylist()
                ).encode()
            )
        counter[0] += batch.num_rows
        if pipe.pending >= TEXT_CHUNK_BYTES:
            yield pipe.drain()
    if writer is not None:
        writer.close()
    elif fmt == "csv" and schema is not None:  # no rows: a header-only file
        empty = _text_ready(pa.RecordBatch.from_pylist([], schema=schema))
        pa.csv.CSVWriter(pa.PythonFile(out, mode="w"), empty.schema).close()
    if out is not pipe:
        out.close()
    if pipe.pending:
        yield pipe.drain()


def write_batches(
    store: ObjectStore,
    key: str,
    batches: Iterable[Any],
    format: str | None = None,
    *,
    schema: pa.Schema | None = None,
    row_group_rows: int = ROW_GROUP_ROWS,
    compression: str | None = None,
) -> WriteResult:
    """Stream record batches (or tables) to ``key`` as Parquet, CSV or JSON Lines (``format``
    defaults to what ``key``'s extension names).

    Every batch must match ``schema`` (default: the first batch's), else InvalidInput naming
    the columns. ``compression``: a Parquet codec (default ``zstd``) or ``gzip`` for text.
    Nothing is visible at ``key`` unless the whole stream was written.
    """
    fmt = format_for(key, format)
    _pyarrow()
    if row_group_rows < 1:
        raise InvalidInput(f"row_group_rows must be >= 1, not {row_group_rows}", target=key)
    where = store.url_for(key)
    counter = [0]
    if fmt == "parquet":
        chunks = _parquet_chunks(
            batches, schema, where, row_group_rows, compression or "zstd", counter
        )
    else:
        if compression not in (None, "gzip"):
            raise InvalidInput(
                f"{fmt} compression must be None or 'gzip', not {compression!r}", target=key
            )
        chunks = _text_chunks(fmt, batches, schema, where, compression, counter)
    sent = [0]

    def counted() -> Iterator[bytes]:
        for chunk in chunks:
            sent[0] += len(chunk)
            yield chunk

    store.put_stream(counted(), key)
    return WriteResult(key=key, rows=counter[0], bytes=sent[0], format=fmt)


# -- reading -------------------------------------------------------------------------------


def _seekable(reader: BinaryIO) -> Any:
    """``reader`` itself if it can seek, else its content spooled (memory up to SPOOL_BYTES,
    then a temporary file)."""
    try:
        if reader.seekable():
            return reader
    except (AttributeError, OSError, ValueError):
        pass
    spool: Any = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
    with reader:
        while chunk := reader.read(1024 * 1024):
            spool.write(chunk)
    spool.seek(0)
    return spool


def _read_types(pa: Any, schema: pa.Schema) -> dict[str, Any]:
    """Per column, the type a text reader parses into before :func:`_restore`."""
    types: dict[str, Any] = {}
    for field in schema:
        kind = field.type
        if (
            pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)
            or pa.types.is_fixed_size_binary(kind)
        ):
            types[field.name] = pa.large_string()
        elif pa.types.is_duration(kind):
            types[field.name] = pa.int64()
        elif any(check(kind) for check in (pa.types.is_decimal, pa.types.is_temporal)):
            types[field.name] = pa.large_string()
        else:
            types[field.name] = kind
    return types


def _restore_column(pa: Any, column: Any, kind: Any) -> Any:
    """A parsed text column converted to ``kind``."""
    if column.type == kind:
        return column
    if (
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_fixed_size_binary(kind)
    ):
        return pa.array([None if v is None else bytes.fromhex(v) for v in column.to_pylist()], kind)
    if pa.types.is_time(kind):
        return pa.array(
            [None if v is None else dt.time.fromisoformat(v) for v in column.to_pylist()], kind
        )
    return column.cast(kind)


def _restore(pa: Any, batch: Any, schema: pa.Schema | None) -> Any:
    if schema is None:
        return batch
    wanted = {f.name: f for f in schema}
    fields, arrays = [], []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        target = wanted.get(field.name, field)
        arrays.append(_restore_column(pa, column, target.type))
        fields.append(target)
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _text_batches(
    pa: Any, fmt: str, stream: Any, where: str, columns: list[str] | None, schema: Any
) -> Iterator[Any]:
    types = _read_types(pa, schema) if schema is not None else None
    try:
        if fmt == "csv":
            convert = pa.csv.ConvertOptions(
                column_types=types or {}, include_columns=columns or [], strings_can_be_null=True
            )
            reader = pa.csv.open_csv(
                stream,
                read_options=pa.csv.ReadOptions(block_size=TEXT_BLOCK_BYTES),
                convert_options=convert,
            )
        else:
            parse = pa.json.ParseOptions(
                explicit_schema=pa.schema(list(types.items())) if types else None,
                unexpected_field_behavior="infer",
            )
            reader = pa.json.open_json(
                stream,
                read_options=pa.json.ReadOptions(block_size=TEXT_BLOCK_BYTES),
                parse_options=parse,
            )
    except pa.ArrowInvalid as exc:
        if str(exc).startswith("Empty"):  # an empty object holds no rows: not an error
            return
        raise
    for batch in reader:
        if columns is not None and fmt == "jsonl":
            batch = batch.select([c for c in columns if c in batch.schema.names])
        yield _restore(pa, batch, schema)


def read_batches(
    store: ObjectStore,
    key: str,
    format: str | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
    columns: list[str] | None = None,
    schema: pa.Schema | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``key`` (format from its extension unless given), streamed.

    ``columns`` selects columns; ``schema`` gives CSV / JSON Lines their Arrow types back.
    A corrupt or unreadable file raises InvalidInput naming the object.
    """
    fmt = format_for(key, format)
    pa = _pyarrow()
    where = store.url_for(key)
    reader = store.open(key)  # opened eagerly so a missing key fails at the call

    def bad(exc: Exception) -> InvalidInput:
        return InvalidInput(
            f"{where}: not a readable {fmt} file ({type(exc).__name__}: {exc})", target=key
        )

    def batches() -> Iterator[Any]:
        errors = (pa.ArrowException, OSError, EOFError, ValueError, UnicodeDecodeError)
        source: Any = reader
        try:
            if fmt == "parquet":
                source = _seekable(reader)
                try:
                    parquet = pa.parquet.ParquetFile(source)
                    iterator = parquet.iter_batches(batch_size=batch_rows, columns=columns)
                except errors as exc:
                    raise bad(exc) from None
            else:
                if key.lower().endswith(".gz"):
                    source = gzip.GzipFile(fileobj=reader, mode="rb")
                try:
                    iterator = _text_batches(pa, fmt, source, where, columns, schema)
                except errors as exc:
                    raise bad(exc) from None
            while True:
                try:
                    batch = next(iterator, None)
                except errors as exc:
                    raise bad(exc) from None
                if batch is None:
                    return
                yield batch
        finally:
            source.close()
            reader.close()

    return batches()
