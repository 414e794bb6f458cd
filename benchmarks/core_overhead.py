"""RetryingTask overhead on the success path vs a bare Prefect ``@task``, in one flow run.

    nox -s bench -- core [--calls 1000]

Calls are interleaved one by one so both contenders see the same machine load; prints
the median over rounds of the mean per-call time, and the ratio. Target: under 5% overhead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="flowport-bench-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.testing.utilities import prefect_test_harness

from flowport import RetryingTask


class Increment(RetryingTask):
    """The trivial task: one retried unit that adds one."""

    def run(self, x: int) -> int:
        return self.retrying(lambda: x + 1)

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)


increment = Increment()


# Same cache policy as RetryingTask, so the comparison is of the wrapper, not of hashing.
@task(cache_policy=NO_CACHE)
def bare_increment(x: int) -> int:
    return x + 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="100 calls")
    args = parser.parse_args()
    calls = 100 if args.quick else args.calls
    per_round = max(1, calls // args.rounds)

    @flow
    def measure() -> dict[str, list[float]]:
        for i in range(200):  # warm both paths
            bare_increment(i)
            increment(i)
        times: dict[str, list[float]] = {"bare @task": [], "RetryingTask": []}
        clock = time.perf_counter
        contenders = [("bare @task", bare_increment), ("RetryingTask", increment)]
        for _ in range(args.rounds):
            spent = {"bare @task": 0.0, "RetryingTask": 0.0}
            for i in range(per_round):  # interleaved call by call, first place alternating
                pair = contenders if i % 2 == 0 else contenders[::-1]
                for name, fn in pair:
                    t0 = clock()
                    fn(i)
                    spent[name] += clock() - t0
            for name, total in spent.items():
                times[name].append(total / per_round)
        return times

    with prefect_test_harness(server_startup_timeout=120):
        times = measure()
    bare = statistics.median(times["bare @task"])
    ours = statistics.median(times["RetryingTask"])
    total = per_round * args.rounds
    print(f"\ncore overhead: {total} calls each, {args.rounds} alternating rounds (median)")
    print(f"{'contender':<14} {'ms/call':>9} {'ratio':>7}")
    print(f"{'bare @task':<14} {bare * 1e3:>9.3f} {1.0:>7.3f}")
    print(f"{'RetryingTask':<14} {ours * 1e3:>9.3f} {ours / bare:>7.3f}")
    print(f"overhead: {(ours / bare - 1) * 100:+.1f}% (target < +5%)")


if __name__ == "__main__":
    main()
