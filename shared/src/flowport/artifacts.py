"""Prefect table artifacts that summarise what a task moved (objects, bytes, rows, seconds)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from flowport.progress import in_prefect_run
from flowport.secrets import redact


def summarise(task_name: str, rows: Sequence[Mapping[str, Any]], description: str = "") -> None:
    """Publish ``rows`` as a table artifact of the current run; a no-op outside Prefect runs.

    Every cell goes through :func:`flowport.secrets.redact`, so an artifact never shows a secret.
    """
    if not in_prefect_run() or not rows:
        return
    from prefect.artifacts import create_table_artifact

    key = re.sub(r"[^a-z0-9-]+", "-", f"flowport-{task_name}".lower()).strip("-")
    table = [{k: redact(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]
    create_table_artifact(table, key=key, description=redact(description or task_name))
