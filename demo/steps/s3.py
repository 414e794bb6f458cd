"""Demo step for flowport-s3: upload, list, copy, sync, presign and read back on the
harness's S3 server (versitygw)."""

from __future__ import annotations

import os
import urllib.request
import uuid
from pathlib import Path

SERVICES = ["s3"]


def step(workdir: Path) -> str:
    """Runs inside the demo flow: prebuilt tasks against any S3-compatible endpoint."""
    import flowport_s3 as s3

    credentials = s3.AwsCredentials(
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        endpoint_url=os.environ["FLOWPORT_S3_ENDPOINT"],
        addressing_style="path",
    )
    bucket = s3.S3Bucket(
        bucket_name=f"flowport-demo-{uuid.uuid4().hex[:8]}", prefix="demo", credentials=credentials
    )
    # Setup only: flowport's tasks never create buckets.
    bucket.client().create_bucket(Bucket=bucket.bucket_name)

    local = workdir / "s3"
    (local / "reports").mkdir(parents=True, exist_ok=True)
    (local / "users.csv").write_bytes(b"id,name\n1,ada\n2,grace\n")
    (local / "reports" / "q1.txt").write_bytes(b"all good\n")
    (local / "reports" / "q2.txt").write_bytes(b"even better\n")

    uploaded = s3.upload_file(bucket, local / "users.csv", "raw/users.csv", if_not_exists=True)
    s3.copy_object(bucket, "raw/users.csv", "curated/users.csv")
    synced = s3.sync(bucket, local / "reports", "reports")
    keys = [info.key for info in s3.list_objects(bucket, glob="**.csv")]
    url = s3.presigned_url(bucket, "reports/q1.txt", expires=300)
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - loopback demo URL
        via_url = resp.read().decode().strip()
    back = s3.download_file(bucket, "curated/users.csv", directory=workdir / "s3-back")
    rows = Path(back).read_bytes().decode().splitlines()
    return (
        f"s3: {uploaded.size} B uploaded create-only, {len(synced.transferred)} file(s) synced, "
        f"csv objects {keys}, presigned GET read {via_url!r}, {len(rows) - 1} rows read back"
    )
