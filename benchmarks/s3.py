"""S3 benchmark: flowport-s3 vs raw boto3 vs prefect-aws, against the harness's S3 server.

    python benchmarks/s3.py [--quick] [--rounds N]

Uploads and downloads one file (1 GiB; 64 MiB with --quick) with

* flowport ``upload_file`` / ``download_file`` (task bodies, ``.fn``: no Prefect run overhead),
* raw boto3 ``upload_file`` / ``download_file`` with the same TransferConfig (8 MiB parts,
  10 threads, the S3Bucket defaults),
* prefect-aws ``S3Bucket.upload_from_path`` / ``download_object_to_path``,

in rotating order, N rounds, and prints the median MB/s of each and its ratio to raw boto3.
Then, in a fresh subprocess per size, the peak RSS (VmHWM) of a streamed copy
(``get_stream`` piped into ``put_stream``) of a 256 MiB and a 2 GiB object (64 / 256 MiB with
--quick): memory must stay under 200 MB and not grow with the object size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _common import BUCKET, GiB, MiB, proc_status_kb, sha256_file, write_file


def flowport_bucket(env: dict[str, str]) -> Any:
    from flowport_s3 import AwsCredentials, S3Bucket

    return S3Bucket(
        bucket_name=BUCKET,
        credentials=AwsCredentials(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
            endpoint_url=env["FLOWPORT_S3_ENDPOINT"],
            addressing_style="path",
        ),
    )


def contenders(env: dict[str, str]) -> dict[str, tuple[Callable[..., Any], Callable[..., Any]]]:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    from flowport_s3 import download_file, upload_file

    bucket = flowport_bucket(env)
    raw = boto3.client(
        "s3",
        endpoint_url=env["FLOWPORT_S3_ENDPOINT"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=14),
    )
    same = TransferConfig(
        multipart_threshold=bucket.part_size,
        multipart_chunksize=bucket.part_size,
        max_concurrency=bucket.concurrency,
    )

    from prefect_aws import AwsClientParameters, AwsCredentials
    from prefect_aws.s3 import S3Bucket as PrefectS3Bucket

    pa = PrefectS3Bucket(
        bucket_name=BUCKET,
        credentials=AwsCredentials(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
            aws_client_parameters=AwsClientParameters(
                endpoint_url=env["FLOWPORT_S3_ENDPOINT"],
                config={"s3": {"addressing_style": "path"}},
            ),
        ),
    )
    return {
        "raw boto3": (
            lambda src, key: raw.upload_file(str(src), BUCKET, key, Config=same),
            lambda key, dst: raw.download_file(BUCKET, key, str(dst), Config=same),
        ),
        "flowport-s3": (
            lambda src, key: upload_file.fn(bucket, src, key),
            lambda key, dst: download_file.fn(bucket, key, dst),
        ),
        "prefect-aws": (
            lambda src, key: pa.upload_from_path(str(src), key),
            lambda key, dst: pa.download_object_to_path(key, str(dst)),
        ),
    }


def throughput(env: dict[str, str], size: int, rounds: int, workdir: Path) -> list[dict[str, Any]]:
    src = workdir / "source.bin"
    expected = write_file(src, size)
    runners = contenders(env)
    names = list(runners)
    timings: dict[str, dict[str, list[float]]] = {n: {"up": [], "down": []} for n in names}
    warm = workdir / "warm.bin"
    warm.write_bytes(b"w" * 1024)
    for upload, download in runners.values():  # clients built, connections open
        upload(warm, "bench/warm")
        download("bench/warm", workdir / "warm.out")
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            upload, download = runners[name]
            key = f"bench/{name.replace(' ', '-')}.bin"
            dst = workdir / f"down-{name.replace(' ', '-')}.bin"
            t0 = time.perf_counter()
            upload(src, key)
            timings[name]["up"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            download(key, dst)
            timings[name]["down"].append(time.perf_counter() - t0)
            if r == 0 and sha256_file(dst) != expected:
                raise SystemExit(f"{name}: downloaded file differs from the source")
            dst.unlink()
            print(
                f"  round {r + 1}: {name:<12} up {timings[name]['up'][-1]:6.2f}s "
                f"down {timings[name]['down'][-1]:6.2f}s",
                flush=True,
            )
    src.unlink()
    rows = []
    for name in names:
        up = size / MiB / statistics.median(timings[name]["up"])
        down = size / MiB / statistics.median(timings[name]["down"])
        rows.append({"name": name, "up": up, "down": down})
    return rows


# -- peak RSS of a streamed copy, measured in a fresh process -----------------------------


def vm_hwm_kb() -> int:
    """Peak RSS of this process (VmHWM). Not ru_maxrss: Linux carries that over exec from
    the parent, so a child of a big parent would report the parent's peak."""
    return proc_status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_child(size: int, src_key: str, dst_key: str) -> None:
    """Runs in the subprocess: stream ``src_key`` into ``dst_key`` (S3Bucket defaults: 8 MiB
    parts, stream_concurrency 4) and report peak RSS."""
    from flowport_s3 import S3Store

    store = S3Store(flowport_bucket(dict(os.environ)))
    store.stat(src_key)  # client built, connection pool warm: the baseline
    baseline = vm_hwm_kb()
    t0 = time.perf_counter()
    info = store.put_stream(store.get_stream(src_key), dst_key)
    seconds = time.perf_counter() - t0
    peak = vm_hwm_kb()
    assert info.size == size, (info.size, size)
    print(json.dumps({"baseline_kb": baseline, "peak_kb": peak, "seconds": seconds}))


def generated(size: int) -> Iterator[bytes]:
    block = os.urandom(8 * MiB)
    left = size
    while left:
        piece = block[: min(len(block), left)]
        left -= len(piece)
        yield piece


def peak_rss(env: dict[str, str], size: int) -> dict[str, Any]:
    from flowport_s3 import S3Store

    store = S3Store(flowport_bucket(env))
    src = f"rss/src-{size}"
    store.put_stream(generated(size), src)
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--rss-child",
            str(size),
            src,
            f"rss/dst-{size}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"RSS child failed:\n{proc.stdout}\n{proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    store.delete_many([src, f"rss/dst-{size}"])
    return {
        "size": size,
        "baseline": out["baseline_kb"] / 1024,
        "peak": out["peak_kb"] / 1024,
        "mbps": size / MiB / out["seconds"],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (< 1 min)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; quick 1)")
    parser.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(int(args.rss_child[0]), args.rss_child[1], args.rss_child[2])
        return 0

    size = 64 * MiB if args.quick else GiB
    rss_sizes = [64 * MiB, 256 * MiB] if args.quick else [256 * MiB, 2 * GiB]
    rounds = args.rounds or (1 if args.quick else 3)

    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="flowport-bench-"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flowport_testing import S3Server

    # A private server, started and stopped here: Harness().up() would reuse (and its down()
    # would then stop) a server someone started with the CLI, and shared load skews timings.
    svc = S3Server()
    svc.start()
    try:
        env = svc.env()
        svc.client().create_bucket(Bucket=BUCKET)
        print(
            f"S3 benchmark against {svc.describe()} at {svc.endpoint_url}; "
            f"{size // MiB} MiB file, {rounds} round(s), median shown",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="flowport-s3-bench-") as tmp:
            rows = throughput(env, size, rounds, Path(tmp))
        rss = [peak_rss(env, s) for s in rss_sizes]
    finally:
        svc.close()

    base = next(r for r in rows if r["name"] == "raw boto3")
    print()
    print(
        f"| {'contender':<12} | {'upload MB/s':>11} | {'x boto3':>7} | {'download MB/s':>13} "
        f"| {'x boto3':>7} |"
    )
    print(f"|{'-' * 14}|{'-' * 13}|{'-' * 9}|{'-' * 15}|{'-' * 9}|")
    for r in rows:
        print(
            f"| {r['name']:<12} | {r['up']:>11.1f} | {r['up'] / base['up']:>7.2f} "
            f"| {r['down']:>13.1f} | {r['down'] / base['down']:>7.2f} |"
        )
    print()
    print(
        f"| {'streamed copy':<14} | {'baseline RSS MB':>15} | {'peak RSS MB':>11} | {'MB/s':>6} |"
    )
    print(f"|{'-' * 16}|{'-' * 17}|{'-' * 13}|{'-' * 8}|")
    for r in rss:
        print(
            f"| {r['size'] // MiB:>10} MiB | {r['baseline']:>15.0f} | {r['peak']:>11.0f} "
            f"| {r['mbps']:>6.0f} |"
        )
    fp = next(r for r in rows if r["name"] == "flowport-s3")
    ok_speed = fp["up"] / base["up"] >= 0.95 and fp["down"] / base["down"] >= 0.95
    ok_rss = all(r["peak"] < 200 for r in rss)
    print()
    print(
        f"targets: >= 0.95x raw boto3 {'met' if ok_speed else 'MISSED'}; "
        f"peak RSS < 200 MB {'met' if ok_rss else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
