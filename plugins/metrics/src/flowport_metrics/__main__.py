"""``python -m flowport_metrics``: a standing endpoint for short-lived worker processes.

With ``PROMETHEUS_MULTIPROC_DIR`` shared by the workers of a host (a Prefect process worker
runs each flow run in a process of its own), it serves the sum of everything they counted,
also after they exited; run it before the workers so it holds the port.
"""

from __future__ import annotations

import argparse
import logging
import threading

from flowport_metrics.exporter import MULTIPROC_ENV, multiprocess_dir, start_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowport_metrics", description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="default: FLOWPORT_METRICS_PORT")
    parser.add_argument("--addr", default=None, help="default: FLOWPORT_METRICS_ADDR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if multiprocess_dir() is None:
        parser.error(f"{MULTIPROC_ENV} is not set: there is nothing but this process to serve")
    endpoint = start_server(args.port, args.addr)
    if endpoint.port is None:
        parser.error(endpoint.reason)
    print(f"serving {endpoint.url}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
