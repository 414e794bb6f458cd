"""The Connector object the ``flowport.connectors`` entry point names."""

from __future__ import annotations

from flowport.plugins import Connector
from flowport_s3.blocks import AwsCredentials, S3Bucket
from flowport_s3.tasks import TASKS, check_bucket


def check(block: S3Bucket) -> str:
    """``flowport check s3 --block NAME``: a HeadBucket, nothing written."""
    return str(check_bucket.fn(block))


connector = Connector(
    name="s3",
    distribution="flowport-s3",
    summary="Amazon S3 and S3-compatible stores: streaming multipart transfers, sync, presign",
    tasks=TASKS,
    blocks=[AwsCredentials, S3Bucket],
    check=check,
    check_block=S3Bucket,
)
