"""Prefect tasks over :mod:`flowport.transfer`: one transfer, or a verified store-to-store copy.

A whole transfer is one idempotent unit (deterministic output names, the mark stored after or
with the data), so a transient failure retries it whole; the rerun overwrites, never doubles.
"""

from __future__ import annotations

import time
from typing import Any

from flowport.artifacts import summarise
from flowport.lineage import Lineage, endpoint_uris, store_uri
from flowport.progress import run_logger
from flowport.store import ObjectStore
from flowport.task import RetryingTask
from flowport.transfer import CopyResult, Sink, Source, TransferResult, copy_objects, transfer


class TransferTaskBase(RetryingTask):
    """Flowport errors say for themselves whether they are transient; nothing else is."""

    tags = ("flowport", "transfer")

    def is_transient(self, exc: BaseException) -> bool:
        return False


class RunTransfer(TransferTaskBase):
    """Move what ``source`` has above the mark ``sink`` keeps for ``name`` into ``sink``."""

    def run(
        self, source: Source, sink: Sink, name: str, incremental: bool = True
    ) -> TransferResult:
        started = time.perf_counter()
        result = self.retrying(transfer, source, sink, name=name, incremental=incremental)
        seconds = time.perf_counter() - started
        run_logger().info(
            "transfer %s: %s -> %s: %d rows, %d bytes in %.2f s",
            name,
            source.uri,
            sink.uri,
            result.rows,
            result.bytes,
            seconds,
        )
        row = {
            "transfer": name,
            "source": result.source,
            "target": result.target,
            "rows": result.rows,
            "bytes": result.bytes,
            "files": len(result.written),
            "from": str(result.lower),
            "to": str(result.upper),
            "seconds": round(seconds, 3),
        }
        summarise(self.name, [row], target=sink.uri)
        return result

    def lineage(self, arguments: dict[str, Any], result: TransferResult | None) -> Lineage:
        """Reads the source, materializes the sink (a table, or a store prefix of files)."""
        metadata: dict[str, Any] = {}
        if result is not None:
            metadata = {
                "transfer": result.name,
                "rows": result.rows,
                "bytes": result.bytes,
                "files": len(result.written),
                "from": str(result.lower),
                "to": str(result.upper),
            }
        return Lineage(
            reads=endpoint_uris(arguments["source"]),
            writes=endpoint_uris(arguments["sink"]),
            metadata=metadata,
        )


class CopyBetween(TransferTaskBase):
    """Copy ``keys`` (or everything under ``prefix``) from one store to another: streamed,
    ``concurrency`` objects at a time, each copy read back and SHA-256 verified."""

    def run(
        self,
        source: ObjectStore,
        target: ObjectStore,
        keys: list[str] | None = None,
        prefix: str = "",
        concurrency: int = 8,
        verify: bool = True,
    ) -> CopyResult:
        started = time.perf_counter()
        wanted = keys if keys is not None else [o.key for o in source.list(prefix)]
        result = self.retrying(
            copy_objects, source, target, wanted, concurrency=concurrency, verify=verify
        )
        seconds = time.perf_counter() - started
        run_logger().info(
            "copied %d objects (%d bytes) to %s in %.2f s",
            len(result.copied),
            result.bytes,
            target.url_for(wanted[0]) if wanted else "",
            seconds,
        )
        return result

    def lineage(self, arguments: dict[str, Any], result: CopyResult | None) -> Lineage:
        """Reads each source object and materializes its copy (a prefix when there are many)."""
        source, target = arguments["source"], arguments["target"]
        keys = result.copied if result is not None else arguments["keys"]
        if keys is None:
            prefix = arguments["prefix"]
            return Lineage(reads=[store_uri(source, prefix)], writes=[store_uri(target, prefix)])
        metadata = {"objects": len(result.copied), "bytes": result.bytes} if result else {}
        return Lineage(
            reads=[store_uri(source, k) for k in keys],
            writes=[store_uri(target, k) for k in keys],
            metadata=metadata,
        )


run_transfer = RunTransfer()
copy_between = CopyBetween()
