"""Demo step for flowport-gcs: upload, list, sync and read back on fake-gcs-server."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

SERVICES = ["gcs"]


def step(workdir: Path) -> str:
    """Runs inside the demo flow: prebuilt tasks against the harness's GCS emulator."""
    import flowport_gcs as gcs

    endpoint = os.environ["FLOWPORT_GCS_ENDPOINT"]
    project = os.environ.get("GOOGLE_CLOUD_PROJECT", "flowport-demo")
    bucket = gcs.GcsBucket(
        bucket=f"flowport-demo-{uuid.uuid4().hex[:8]}",
        prefix="demo",
        credentials=gcs.GcpCredentials(anonymous=True, endpoint=endpoint, project=project),
    )
    # Setup only: flowport's tasks never need bucket-level calls.
    bucket.credentials.storage_client().create_bucket(bucket.bucket)

    local = workdir / "gcs"
    (local / "reports").mkdir(parents=True, exist_ok=True)
    (local / "users.csv").write_bytes(b"id,name\n1,ada\n2,grace\n")
    (local / "reports" / "q1.txt").write_bytes(b"all good\n")

    uploaded = gcs.upload_file(bucket, local / "users.csv", "raw/users.csv", if_not_exists=True)
    synced = gcs.sync(bucket, local / "reports", "reports")
    keys = [info.key for info in gcs.list_objects(bucket)]
    back = gcs.download_file(bucket, "raw/users.csv", workdir / "gcs-back" / "users.csv")
    rows = Path(back).read_bytes().decode().splitlines()
    return (
        f"gcs: {uploaded.size} B uploaded create-only, {len(synced.transferred)} file(s) synced, "
        f"{bucket.url()} holds {keys}, {len(rows) - 1} rows read back"
    )
