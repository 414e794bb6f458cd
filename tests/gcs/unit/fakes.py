"""A stand-in for a GCS resumable-upload session (unit tests only: offline, scriptable faults).

It follows the GCS protocol strictly: a chunk must start at the committed offset, a status query
(``Content-Range: bytes */N``) answers 308 with ``Range: bytes=0-<last>`` or the finished
object.
"""

from __future__ import annotations

import base64
import json
import re
from types import SimpleNamespace
from typing import Any

import google_crc32c as _google_crc32c

GRANULE = 256 * 1024
google_crc32c: Any = _google_crc32c  # untyped


class FakeResponse:
    def __init__(self, status: int, headers: dict[str, str] | None = None, body: Any = None):
        self.status_code = status
        self.headers = headers or {}
        self._body = body
        self.text = json.dumps(body) if body is not None else ""
        self.content = self.text.encode()
        self.request = SimpleNamespace(method="PUT", url="http://fake/session")
        self.reason = "fake"

    def json(self) -> Any:
        return self._body if self._body is not None else {}

    def close(self) -> None:
        pass


class FakeSession:
    """Script faults by PUT number: ``faults[n] = ("reset", committed_bytes)`` commits that
    many bytes of request n and drops the connection; ``("lost", None)`` commits all of it
    but loses the answer; ``("status", 503)`` answers with that status."""

    def __init__(self, faults: dict[int, tuple[str, Any]] | None = None, strict: bool = True):
        self.data = bytearray()
        self.total: int | None = None
        self.finished = False
        self.faults = faults or {}
        self.puts = 0
        self.queries = 0
        self.probes = 0
        self.strict = strict
        self.log: list[str] = []

    def _object(self) -> dict[str, Any]:
        crc = base64.b64encode(google_crc32c.Checksum(bytes(self.data)).digest()).decode()
        return {"name": "k", "size": str(len(self.data)), "crc32c": crc, "etag": "e"}

    def _range(self) -> dict[str, str]:
        return {"Range": f"bytes=0-{len(self.data) - 1}"} if self.data else {}

    def request(
        self, method: str, url: str, data: Any = b"", headers: Any = None, **_: Any
    ) -> FakeResponse:
        headers = headers or {}
        content_range = headers["Content-Range"]
        self.log.append(content_range)
        if self.finished:
            return FakeResponse(200, body=self._object())
        m = re.fullmatch(r"bytes \*/(\*|\d+)", content_range)
        if m:  # a status query, or the finalizing empty request
            self.queries += 1
            if m.group(1) != "*" and int(m.group(1)) == len(self.data):
                self.finished = True
                return FakeResponse(200, body=self._object())
            return FakeResponse(308, self._range())
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\*|\d+)", content_range)
        assert m, content_range
        start, end = int(m.group(1)), int(m.group(2))
        body = bytes(data)
        if not body and end == start - 1:  # fake-gcs-server's answer to an empty range
            self.probes += 1
            return FakeResponse(308, {"Range": f"bytes=0-{end}"}, self._object())
        assert len(body) == end - start + 1
        if self.strict:
            assert start == len(self.data), f"chunk at {start}, committed {len(self.data)}"
        n = self.puts
        self.puts += 1
        fault = self.faults.get(n)
        if fault and fault[0] == "status":
            return FakeResponse(fault[1], body={"error": {"code": fault[1], "message": "x"}})
        if fault and fault[0] == "reset":
            self.data += body[: fault[1]]
            raise ConnectionResetError("connection reset by peer (scripted)")
        self.data += body
        if fault and fault[0] == "lost":
            raise ConnectionResetError("answer lost (scripted)")
        total = m.group(3)
        if total != "*" and int(total) == len(self.data):
            self.finished = True
            return FakeResponse(200, body=self._object())
        return FakeResponse(308, self._range())
