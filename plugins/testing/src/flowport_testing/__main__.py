"""``flowport-services install|up|down|status|env|logs`` - manage the real test services.

Also ``python -m flowport_testing ...``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from .services import SERVICES, Harness, ServiceError, running, versions
from .services.base import read_state


def _fallbacks() -> str:
    return (
        f"s3={versions.S3_IMPL} fault-proxy={versions.FAULT_PROXY_IMPL} "
        f"gcs-binary={versions.FAKE_GCS_SOURCE}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowport-services", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd, nargs, help_ in [
        ("install", "*", "install/cache without starting"),
        ("up", "+", "start services and leave them running"),
        ("down", "*", "stop services (default: all running)"),
    ]:
        p = sub.add_parser(cmd, help=help_)
        p.add_argument("names", nargs=nargs, help=f"{', '.join(SERVICES)} or all")
    sub.add_parser("status", help="name, kind, version, pid, port, healthy")
    sub.add_parser("env", help="export lines for the running services")
    p = sub.add_parser("logs", help="print a service's log")
    p.add_argument("name", choices=list(SERVICES))
    p.add_argument("-n", type=int, default=200, help="lines")
    args = parser.parse_args(argv)

    try:
        if args.cmd == "install":
            t0 = time.monotonic()
            Harness().install(args.names or "all")
            print(f"installed {' '.join(args.names or ['all'])} in {time.monotonic() - t0:.1f}s")
        elif args.cmd == "up":
            t0 = time.monotonic()
            started = Harness(persist=True).up(args.names)
            for name, svc in started.items():
                print(f"{name}: up on {svc.url} (pid {svc.pid})")
            print(f"ready in {time.monotonic() - t0:.1f}s")
        elif args.cmd == "down":
            names = args.names or list(read_state())
            Harness().down(names)
            print(f"stopped {' '.join(names) or 'nothing'}")
        elif args.cmd == "status":
            print(f"# {_fallbacks()}")
            print(f"{'name':<10} {'kind':<16} {'version':<8} {'pid':>7} {'port':>6} healthy")
            for name, data in read_state().items():
                alive = running(name)
                print(
                    f"{name:<10} {data['kind']:<16} {data['version']:<8} {data['pid']:>7} "
                    f"{data['port']:>6} {'yes' if alive else 'no'}"
                )
        elif args.cmd == "env":
            for name in read_state():
                found = running(name)
                if found is None:
                    print(f"# {name}: recorded but not running", file=sys.stderr)
                    continue
                for key, value in found.env().items():
                    print(f"export {key}={shlex.quote(value)}")
        elif args.cmd == "logs":
            data = read_state().get(args.name)
            if not data:
                print(f"{args.name} is not recorded as running", file=sys.stderr)
                return 1
            print(SERVICES[args.name].from_state(data).log_tail(args.n))
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
