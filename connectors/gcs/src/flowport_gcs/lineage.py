"""Lineage of the GCS-only tasks (the shared object tasks use :mod:`flowport.store_tasks`')."""

from __future__ import annotations

from typing import Any

from flowport.lineage import Lineage
from flowport.store import ObjectInfo
from flowport.store_tasks import StoreTask


def compose_lineage(task: StoreTask, arguments: dict[str, Any], result: Any) -> Lineage:
    """compose_objects: the source objects, composed into ``dst_key`` in the same bucket."""
    bucket = arguments["bucket"]
    return Lineage(
        reads=[task.uri(bucket, key) for key in arguments["sources"]],
        writes=[task.uri(bucket, arguments["dst_key"])],
        metadata={"bytes": result.size} if isinstance(result, ObjectInfo) else {},
    )
