"""GCS benchmark: flowport-gcs vs the raw google-cloud-storage client vs prefect-gcp, on a private
fake-gcs-server started for the run.

    python benchmarks/gcs.py [--quick] [--size-mib N] [--chunk-mib N]

Uploads and downloads one file (1 GiB; 64 MiB with --quick) with

* flowport ``upload_file`` / ``download_file`` (task bodies, ``.fn``: no Prefect run overhead),
* the raw client: ``blob.upload_from_filename`` / ``blob.download_to_filename`` with
  ``blob.chunk_size`` set to the same chunk size,
* prefect-gcp ``GcsBucket.upload_from_path`` / ``download_object_to_path`` (its defaults),

and prints MB/s and the ratio to the raw client. Then, in a fresh subprocess per size, the
peak RSS (VmHWM) of a streamed download (``download_stream`` into a sink that drops the bytes)
of a 256 MiB and a 2 GiB object (64 / 256 MiB with --quick): it must stay flat.

The emulator re-hashes the whole upload so far on every resumable chunk (O(n^2)) and holds the
object in memory: upload speeds are the emulator's more than the client's. Compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import BUCKET, GiB, MiB, proc_status_kb, sha256_file, write_file


def flowport_block(endpoint: str, chunk: int) -> Any:
    from flowport_gcs import GcpCredentials, GcsBucket

    return GcsBucket(
        bucket=BUCKET,
        chunk_size=chunk,
        credentials=GcpCredentials(anonymous=True, endpoint=endpoint, project="flowport-bench"),
    )


def prefect_gcp_bucket() -> Any:
    """prefect-gcp's GcsBucket; its credentials block cannot go anonymous, so a subclass returns
    anonymous credentials (STORAGE_EMULATOR_HOST routes its client to the emulator)."""
    import warnings

    from google.auth.credentials import AnonymousCredentials
    from prefect_gcp import GcpCredentials
    from prefect_gcp.cloud_storage import GcsBucket

    warnings.filterwarnings("ignore", message=".*matches existing registered type")

    class EmulatorCredentials(GcpCredentials):  # type: ignore[misc]
        def get_credentials_from_service_account(self) -> Any:
            return AnonymousCredentials()

    return GcsBucket(bucket=BUCKET, gcp_credentials=EmulatorCredentials(project="flowport-bench"))


def rss_child(endpoint: str, key: str) -> None:
    """Subprocess body: stream ``key`` into a sink that drops it; print peak RSS as JSON."""
    import flowport_gcs as gcs

    def vm(field: str) -> int:
        return proc_status_kb(field) * 1024

    block = flowport_block(endpoint, 16 * MiB)
    block.credentials.storage_client()  # imports and clients before the baseline
    base = vm("VmRSS")
    started = time.perf_counter()
    size = gcs.download_stream.fn(block, key, lambda chunk: None, chunk_size=8 * MiB)
    seconds = time.perf_counter() - started
    print(json.dumps({"size": size, "base": base, "peak": vm("VmHWM"), "seconds": seconds}))


def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (< 1 min)")
    parser.add_argument("--size-mib", type=int, help="transfer size (default 1024 / 64)")
    parser.add_argument("--chunk-mib", type=int, help="resumable chunk size (default 32 / 8)")
    parser.add_argument("--rss-child", nargs=2, metavar=("ENDPOINT", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child)
        return 0

    from flowport_testing import GcsServer

    size = (args.size_mib or (64 if args.quick else 1024)) * MiB
    chunk = (args.chunk_mib or (8 if args.quick else 32)) * MiB
    rss_sizes = [64 * MiB, 256 * MiB] if args.quick else [256 * MiB, 2 * GiB]
    svc = GcsServer()
    svc.start()
    print(f"fake-gcs-server {svc.version} on {svc.endpoint_url} (memory backend, private)")
    os.environ["STORAGE_EMULATOR_HOST"] = svc.endpoint_url
    try:
        import flowport_gcs as gcs

        client = svc.client()
        bucket = client.create_bucket(BUCKET)
        block = flowport_block(svc.endpoint_url, chunk)
        pgcp = prefect_gcp_bucket()
        with tempfile.TemporaryDirectory(prefix="flowport-bench-gcs-") as tmp:
            src = Path(tmp) / "src.bin"
            expected = write_file(src, size)
            dst = Path(tmp) / "dst.bin"

            def raw_up() -> None:
                blob = bucket.blob("raw.bin")
                blob.chunk_size = chunk
                blob.upload_from_filename(str(src))

            def raw_down() -> None:
                blob = bucket.blob("raw.bin")
                blob.chunk_size = chunk
                blob.download_to_filename(str(dst))

            contenders = {
                "flowport-gcs": (
                    lambda: gcs.upload_file.fn(block, src, "flowport.bin"),
                    lambda: gcs.download_file.fn(block, "flowport.bin", dst),
                    "flowport.bin",
                ),
                "raw google-cloud-storage": (raw_up, raw_down, "raw.bin"),
                "prefect-gcp GcsBucket": (
                    lambda: pgcp.upload_from_path(src, "prefect.bin"),
                    lambda: pgcp.download_object_to_path("prefect.bin", dst),
                    "prefect.bin",
                ),
            }
            results: dict[str, tuple[float, float]] = {}
            for name, (up, down, key) in contenders.items():
                up_s = timed(up)
                assert bucket.get_blob(key).size == size, name
                dst.unlink(missing_ok=True)
                down_s = timed(down)
                assert sha256_file(dst) == expected, f"{name}: download differs"
                bucket.blob(key).delete()  # the emulator keeps objects in memory
                results[name] = (size / up_s / 1e6, size / down_s / 1e6)
                print(f"  {name}: up {up_s:.1f}s, down {down_s:.1f}s", flush=True)

        raw_up_mbs, raw_down_mbs = results["raw google-cloud-storage"]
        print()
        print(f"{size // MiB} MiB file, {chunk // MiB} MiB chunks (prefect-gcp: its defaults)")
        print(
            f"{'contender':<26} {'upload MB/s':>12} {'x raw':>7} {'download MB/s':>14} {'x raw':>7}"
        )
        for name, (up_mbs, down_mbs) in results.items():
            print(
                f"{name:<26} {up_mbs:>12.1f} {up_mbs / raw_up_mbs:>7.2f} "
                f"{down_mbs:>14.1f} {down_mbs / raw_down_mbs:>7.2f}"
            )

        # Peak RSS of a streamed download: objects built server-side with compose.
        print()
        print(f"{'streamed download':<18} {'base RSS MB':>12} {'peak RSS MB':>12} {'MB/s':>8}")
        part = min(rss_sizes[0], 256 * MiB)
        with tempfile.TemporaryDirectory(prefix="flowport-bench-gcs-") as tmp:
            piece = Path(tmp) / "piece.bin"
            write_file(piece, part)
            gcs.upload_file.fn(block, piece, "piece.bin")
        for total in rss_sizes:
            key = f"rss-{total // MiB}.bin"
            gcs.compose_objects.fn(block, ["piece.bin"] * (total // part), key)
            out = subprocess.run(
                [sys.executable, __file__, "--rss-child", svc.endpoint_url, key],
                capture_output=True,
                text=True,
                check=True,
            )
            got = json.loads(out.stdout.strip().splitlines()[-1])
            assert got["size"] == total
            base, peak = got["base"] / 1e6, got["peak"] / 1e6
            mbs = total / got["seconds"] / 1e6
            print(f"{total // MiB:>8} MiB{'':<9} {base:>12.0f} {peak:>12.0f} {mbs:>8.1f}")
            bucket.blob(key).delete()
    finally:
        svc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
