"""ADBC PostgreSQL on the driver manager's low-level API: Arrow query streams, bulk ingest and
explicit transactions. Not ADBC's DB-API module, which imports pandas and pyarrow.dataset
(~60 MB resident, about a second of imports) for nothing flowport uses."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


def installed() -> bool:
    """Whether the ADBC PostgreSQL driver and its manager are importable."""
    try:
        import adbc_driver_manager  # noqa: F401
        import adbc_driver_postgresql  # noqa: F401
    except ImportError:
        return False
    return True


def _param(pa: Any, value: Any) -> pa.Array:
    """A one-value array to bind. Text is built from its bytes: ``pa.array`` converts through
    code that imports pandas, when installed, to look for its types (~40 MB)."""
    if isinstance(value, str):
        data = value.encode()
        offsets = struct.pack("<ii", 0, len(data))
        return pa.Array.from_buffers(
            pa.string(), 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        )
    return pa.array([value])


class AdbcConnection:
    """One PostgreSQL connection, autocommit off: every statement joins the open transaction
    until :meth:`commit` or :meth:`rollback`. Errors are ``adbc_driver_manager.Error``."""

    def __init__(self, uri: str) -> None:
        import adbc_driver_manager
        import adbc_driver_postgresql

        self._statements: list[Any] = []  # alive as long as the streams they produced
        self._db = adbc_driver_postgresql.connect(uri)
        try:
            self._conn = adbc_driver_manager.AdbcConnection(self._db)
            self._conn.set_autocommit(False)
        except BaseException:
            self._db.close()
            raise

    def _statement(self, sql: str | None, params: Sequence[Any]) -> Any:
        import adbc_driver_manager
        import pyarrow as pa

        stmt = adbc_driver_manager.AdbcStatement(self._conn)
        self._statements.append(stmt)
        if sql is not None:
            stmt.set_sql_query(sql)
        if params:
            names = [str(i) for i in range(len(params))]
            stmt.bind(pa.record_batch([_param(pa, v) for v in params], names=names))
        return stmt

    def query(
        self, sql: str, params: Sequence[Any] = (), *, batch_bytes: int | None = None
    ) -> pa.RecordBatchReader:
        """The result of ``sql`` (``$1``.. bound to ``params``) as a stream of batches."""
        import pyarrow as pa

        stmt = self._statement(sql, params)
        if batch_bytes is not None:
            stmt.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(batch_bytes)})
        handle, _ = stmt.execute_query()
        return pa.RecordBatchReader._import_from_c(handle.address)

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of a small result, as tuples of Python values."""
        table = self.query(sql, params).read_all()
        return list(zip(*(c.to_pylist() for c in table.columns), strict=True))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement that returns no rows; the rows it affected (-1: unknown)."""
        return int(self._statement(sql, params).execute_update())

    def ingest(
        self, table: str, schema: str | None, reader: pa.RecordBatchReader, mode: str = "append"
    ) -> int:
        """Bulk ingest (binary COPY encoded from the Arrow buffers) of ``reader`` into
        ``schema.table``; ``mode`` ``"append"`` or ``"create"``."""
        import adbc_driver_manager

        stmt = self._statement(None, ())
        options = {
            adbc_driver_manager.INGEST_OPTION_TARGET_TABLE: table,
            adbc_driver_manager.INGEST_OPTION_MODE: f"adbc.ingest.mode.{mode}",
        }
        if schema is not None:
            options[adbc_driver_manager.StatementOptions.INGEST_TARGET_DB_SCHEMA.value] = schema
        stmt.set_options(**options)
        stmt.bind_stream(reader)
        return int(stmt.execute_update())

    def commit(self) -> None:
        self._conn.commit()

    def rollback(self) -> None:
        self._conn.rollback()

    def close(self) -> None:
        """Release the statements, the connection and the database handle (rolls back)."""
        try:
            while self._statements:
                with contextlib.suppress(Exception):
                    self._statements.pop().close()
            self._conn.close()
        finally:
            self._db.close()


__all__ = ["AdbcConnection", "installed"]
