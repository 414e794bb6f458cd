"""Prefect table artifacts that summarise what a task moved (objects, bytes, rows, seconds)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from flowport.progress import in_prefect_run
from flowport.secrets import redact

_MAX_KEY = 120


def artifact_key(task_name: str, target: str = "") -> str:
    """``flowport-<flow>-<task>-<target>``: one artifact history per flow and target, not one
    workspace-wide key that every flow's runs version over each other."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    flow = ctx.flow.name if ctx is not None and ctx.flow is not None else ""
    raw = "-".join(part for part in ("flowport", flow, task_name, redact(target)) if part)
    key = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    if len(key) <= _MAX_KEY:
        return key
    # Too long: keep the start (flow, task) and the end (the table or object), hash the middle.
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    half = (_MAX_KEY - len(digest) - 2) // 2
    return f"{key[:half].rstrip('-')}-{digest}-{key[-half:].lstrip('-')}"


def summarise(
    task_name: str, rows: Sequence[Mapping[str, Any]], description: str = "", *, target: str = ""
) -> None:
    """Publish ``rows`` as a table artifact of the current run; a no-op outside Prefect runs.

    ``target`` (a bucket, table or topic URI) goes into the key. Every cell goes through
    :func:`flowport.secrets.redact`, so an artifact never shows a secret.
    """
    if not in_prefect_run() or not rows:
        return
    from prefect.artifacts import create_table_artifact

    key = artifact_key(task_name, target)
    table = [{k: redact(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]
    create_table_artifact(table, key=key, description=redact(description or task_name))
