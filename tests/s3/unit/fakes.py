"""An in-memory stand-in for the boto3 S3 client (unit tests only), with fault injection."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from botocore.exceptions import ClientError

from flowport_s3 import S3Bucket, S3Store


def client_error(code: str, status: int, op: str = "Op", message: str = "") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message or code},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
        },
        op,
    )


class Body:
    """A StreamingBody look-alike that can break after ``fail_after`` bytes."""

    def __init__(self, data: bytes, fail_after: int | None = None):
        self.data = data
        self.pos = 0
        self.fail_after = fail_after

    def read(self, amt: int | None = None) -> bytes:
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        end = len(self.data) if amt is None else self.pos + amt
        if self.fail_after is not None:
            end = min(end, self.fail_after)
        out = self.data[self.pos : end]
        self.pos += len(out)
        return out

    def close(self) -> None:
        pass


class FakeS3:
    """Objects in a dict; ``faults[op]`` is a list of exceptions raised by the next calls."""

    def __init__(self, checksums: str = "when_supported") -> None:
        self.meta = SimpleNamespace(config=SimpleNamespace(request_checksum_calculation=checksums))
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.faults: dict[str, list[BaseException]] = {}
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.aborted: list[str] = []
        self.on_part: Callable[[int], None] | None = None
        self.body_fail_after: int | None = None

    def _enter(self, op: str, params: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append((op, {k: v for k, v in params.items() if k != "Body"}))
            faults = self.faults.get(op)
            if faults:
                raise faults.pop(0)

    def ops(self, name: str) -> list[dict[str, Any]]:
        return [p for op, p in self.calls if op == name]

    @staticmethod
    def _etag(data: bytes) -> str:
        return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'

    def put_object(self, **p: Any) -> dict[str, Any]:
        self._enter("PutObject", p)
        if p.get("IfNoneMatch") == "*" and p["Key"] in self.objects:
            raise client_error("PreconditionFailed", 412, "PutObject")
        self.objects[p["Key"]] = bytes(p["Body"])
        return {"ETag": self._etag(p["Body"])}

    def create_multipart_upload(self, **p: Any) -> dict[str, Any]:
        self._enter("CreateMultipartUpload", p)
        upload_id = f"up{len(self.uploads)}"
        self.uploads[upload_id] = {}
        return {"UploadId": upload_id}

    def upload_part(self, **p: Any) -> dict[str, Any]:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.on_part:
                self.on_part(p["PartNumber"])
            self._enter("UploadPart", p)
            self.uploads[p["UploadId"]][p["PartNumber"]] = bytes(p["Body"])
            return {"ETag": self._etag(p["Body"])}
        finally:
            with self.lock:
                self.in_flight -= 1

    def complete_multipart_upload(self, **p: Any) -> dict[str, Any]:
        self._enter("CompleteMultipartUpload", p)
        parts = self.uploads.pop(p["UploadId"])
        numbers = [x["PartNumber"] for x in p["MultipartUpload"]["Parts"]]
        data = b"".join(parts[n] for n in numbers)
        self.objects[p["Key"]] = data
        return {"ETag": f'"multi-{len(numbers)}"'}

    def abort_multipart_upload(self, **p: Any) -> dict[str, Any]:
        self._enter("AbortMultipartUpload", p)
        self.aborted.append(p["UploadId"])
        self.uploads.pop(p["UploadId"], None)
        return {}

    def head_object(self, **p: Any) -> dict[str, Any]:
        self._enter("HeadObject", p)
        if p["Key"] not in self.objects:
            raise client_error("404", 404, "HeadObject", "Not Found")
        data = self.objects[p["Key"]]
        return {
            "ContentLength": len(data),
            "ETag": self._etag(data),
            "LastModified": datetime(2026, 1, 1, tzinfo=timezone.utc),
        }

    def get_object(self, **p: Any) -> dict[str, Any]:
        self._enter("GetObject", p)
        if p["Key"] not in self.objects:
            raise client_error("NoSuchKey", 404, "GetObject")
        data = self.objects[p["Key"]]
        start, end = 0, len(data) - 1
        if "Range" in p:
            lo, hi = p["Range"].removeprefix("bytes=").split("-")
            start, end = int(lo), int(hi) if hi else len(data) - 1
        chunk = data[start : end + 1]
        fail = self.body_fail_after
        self.body_fail_after = None  # one broken stream, then healthy ones
        return {"Body": Body(chunk, fail), "ContentLength": len(chunk), "ETag": self._etag(data)}

    def list_objects_v2(self, **p: Any) -> dict[str, Any]:
        self._enter("ListObjectsV2", p)
        keys = sorted(k for k in self.objects if k.startswith(p.get("Prefix", "")))
        return {
            "Contents": [
                {
                    "Key": k,
                    "Size": len(self.objects[k]),
                    "ETag": self._etag(self.objects[k]),
                    "LastModified": datetime(2026, 1, 1, tzinfo=timezone.utc),
                }
                for k in keys
            ],
            "IsTruncated": False,
        }

    def delete_objects(self, **p: Any) -> dict[str, Any]:
        self._enter("DeleteObjects", p)
        errors, deleted = [], []
        for obj in p["Delete"]["Objects"]:
            if obj["Key"].startswith("locked/"):
                errors.append(
                    {"Key": obj["Key"], "Code": "AccessDenied", "Message": "Access Denied"}
                )
            else:
                self.objects.pop(obj["Key"], None)
                deleted.append({"Key": obj["Key"]})
        return {"Deleted": deleted, "Errors": errors}


class FakeStore(S3Store):
    """S3Store over a FakeS3 instead of a real client."""

    def __init__(self, fake: FakeS3, **kwargs: Any):
        super().__init__(S3Bucket(bucket_name="unit-bucket"), **kwargs)
        self.fake = fake

    @property
    def client(self) -> Any:
        return self.fake
