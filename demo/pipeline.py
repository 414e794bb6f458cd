"""The demo pipeline: ``nox -s demo``.

A Prefect flow that writes, lists and reads back objects in a :class:`LocalStore`, then runs
one step per installed connector (``demo/steps/<name>.py``), each against a real service
started by the test harness on 127.0.0.1.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="flowport-demo-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

from prefect import flow, task

from flowport import LocalStore


@task
def core_step(workdir: Path) -> str:
    """Write a small CSV into a LocalStore, list it and read it back."""
    store = LocalStore(workdir / "store")
    store.put_bytes(b"id,name\n1,ada\n2,grace\n", "raw/users.csv")
    listed = [info.key for info in store.list("raw/")]
    rows = store.get_bytes("raw/users.csv").decode().splitlines()
    return f"core: LocalStore holds {listed}, {len(rows) - 1} rows read back"


def load_steps(only: list[str]) -> list[ModuleType]:
    import demo.steps

    names = sorted(m.name for m in pkgutil.iter_modules(demo.steps.__path__))
    return [importlib.import_module(f"demo.steps.{n}") for n in names if not only or n in only]


@flow(name="flowport-demo")
def pipeline(workdir: Path, steps: list[str]) -> list[str]:
    lines = [core_step(workdir)]
    for module in load_steps(steps):
        lines.append(module.step(workdir))
    return lines


def main(argv: list[str]) -> int:
    steps = load_steps(argv)
    services = sorted({s for m in steps for s in getattr(m, "SERVICES", [])})
    harness = None
    if services:
        from tests.services import Harness

        harness = Harness()
        for svc in harness.up(services).values():
            os.environ.update(svc.env())
    try:
        with tempfile.TemporaryDirectory(prefix="flowport-demo-data-") as tmp:
            for line in pipeline(Path(tmp), argv):
                print(line)
    finally:
        if harness is not None:
            harness.down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
