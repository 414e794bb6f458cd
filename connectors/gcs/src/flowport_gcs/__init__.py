"""flowport-gcs: Prefect tasks for Google Cloud Storage.

Resumable uploads that resume from the last committed chunk, streamed downloads that resume
where a connection dropped, generation preconditions, signed URLs, and the same task names and
signatures as flowport-s3: swap the block and an S3 flow runs on GCS.

    from prefect import flow
    from flowport_gcs import GcpCredentials, GcsBucket, download_file, upload_file

    bucket = GcsBucket(
        bucket="raw-events",
        credentials=GcpCredentials(anonymous=True, endpoint="http://127.0.0.1:4443"),
    )

    @flow
    def round_trip(path: str) -> int:
        upload_file(bucket, path, "events/day.parquet", if_not_exists=True)
        return download_file(bucket, "events/day.parquet", "/tmp/day.parquet").stat().st_size
"""

from flowport_gcs.blocks import GcpCredentials, GcsBucket
from flowport_gcs.store import GcsStore, Preconditions, SyncResult, UploadStats
from flowport_gcs.tasks import (
    ComposeObjects,
    CopyObject,
    DeleteObjects,
    DownloadBytes,
    DownloadFile,
    DownloadStream,
    Exists,
    GcsTask,
    ListObjects,
    MoveObject,
    ObjectMetadata,
    PresignedUrl,
    Stat,
    Sync,
    UploadBytes,
    UploadFile,
    UploadStream,
    compose_objects,
    copy_object,
    delete_objects,
    download_bytes,
    download_file,
    download_stream,
    exists,
    list_objects,
    move_object,
    object_metadata,
    presigned_url,
    stat,
    sync,
    upload_bytes,
    upload_file,
    upload_stream,
)

__all__ = [
    "ComposeObjects",
    "CopyObject",
    "DeleteObjects",
    "DownloadBytes",
    "DownloadFile",
    "DownloadStream",
    "Exists",
    "GcpCredentials",
    "GcsBucket",
    "GcsStore",
    "GcsTask",
    "ListObjects",
    "MoveObject",
    "ObjectMetadata",
    "Preconditions",
    "PresignedUrl",
    "Stat",
    "Sync",
    "SyncResult",
    "UploadBytes",
    "UploadFile",
    "UploadStats",
    "UploadStream",
    "compose_objects",
    "copy_object",
    "delete_objects",
    "download_bytes",
    "download_file",
    "download_stream",
    "exists",
    "list_objects",
    "move_object",
    "object_metadata",
    "presigned_url",
    "stat",
    "sync",
    "upload_bytes",
    "upload_file",
    "upload_stream",
]
