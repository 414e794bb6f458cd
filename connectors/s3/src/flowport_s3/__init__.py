"""flowport-s3: Prefect tasks for Amazon S3 and any S3-compatible store.

    from prefect import flow
    from flowport_s3 import AwsCredentials, S3Bucket, upload_file, download_file, list_objects

    bucket = S3Bucket(
        bucket_name="raw-events",
        credentials=AwsCredentials(endpoint_url="http://127.0.0.1:7070", addressing_style="path"),
    )

    @flow
    def roundtrip():
        upload_file(bucket, "events.parquet", "2026/11/events.parquet")
        keys = [o.key for o in list_objects(bucket, "2026/", glob="2026/**.parquet")]
        download_file(bucket, keys[0], directory="downloads")

Uploads and downloads stream in bounded memory; every request or part is retried on its own
on throttling, 5xx, timeouts, dropped connections and checksum mismatches, never on 4xx.
"""

from flowport_s3.blocks import AwsCredentials, S3Bucket
from flowport_s3.store import S3Store, SyncResult
from flowport_s3.tasks import (
    CheckBucket,
    CopyObject,
    DeleteObjects,
    DownloadBytes,
    DownloadFile,
    DownloadStream,
    Exists,
    ListObjects,
    MoveObject,
    PresignedUrl,
    S3Task,
    Stat,
    Sync,
    UploadBytes,
    UploadFile,
    UploadStream,
    check_bucket,
    copy_object,
    delete_objects,
    download_bytes,
    download_file,
    download_stream,
    exists,
    list_objects,
    move_object,
    presigned_url,
    stat,
    sync,
    upload_bytes,
    upload_file,
    upload_stream,
)

__all__ = [
    "AwsCredentials",
    "CheckBucket",
    "CopyObject",
    "DeleteObjects",
    "DownloadBytes",
    "DownloadFile",
    "DownloadStream",
    "Exists",
    "ListObjects",
    "MoveObject",
    "PresignedUrl",
    "S3Bucket",
    "S3Store",
    "S3Task",
    "Stat",
    "Sync",
    "SyncResult",
    "UploadBytes",
    "UploadFile",
    "UploadStream",
    "check_bucket",
    "copy_object",
    "delete_objects",
    "download_bytes",
    "download_file",
    "download_stream",
    "exists",
    "list_objects",
    "move_object",
    "presigned_url",
    "stat",
    "sync",
    "upload_bytes",
    "upload_file",
    "upload_stream",
]
