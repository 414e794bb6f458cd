"""Helpers shared by the object-store benchmarks (``benchmarks/s3.py``, ``benchmarks/gcs.py``).

The benchmarks run as ``python benchmarks/<name>.py``, so this directory is ``sys.path[0]``
and ``from _common import ...`` works.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MiB = 1024 * 1024
GiB = 1024 * MiB
BUCKET = "flowport-bench"


def write_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(4 * MiB)
    with path.open("wb") as fh:
        left = size
        while left:
            piece = block[: min(len(block), left)]
            fh.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(8 * MiB):
            digest.update(block)
    return digest.hexdigest()


def proc_status_kb(field: str) -> int:
    """A kB field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ...); 0 when absent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0
