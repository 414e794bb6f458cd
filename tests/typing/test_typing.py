"""Tasks are typed for users (issue 13, item 8): mypy and pyright on snippets.

``snippets/ok.py`` calls every prebuilt task of every connector correctly (plus ``.submit()``,
``.map()``, ``.fn`` and ``.with_options()``) and must check clean in both; ``snippets/bad.py``
holds incorrect calls, and both checkers must flag exactly its lines marked ``# expect-error``.
Each checker runs once, as a subprocess, over all snippets and README.md's flow. pyright's
wheel drives the machine's node; anything it has to fetch (a pyright npm package other than the
bundled one, or node itself) is cached in ``~/.cache/flowport/pyright``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import tokenize
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from flowport.task import RetryingTask

ROOT = Path(__file__).resolve().parents[2]
SNIPPETS = Path(__file__).resolve().parent / "snippets"
OK = SNIPPETS / "ok.py"
BAD = SNIPPETS / "bad.py"
CONNECTORS = ("sql", "s3", "gcs", "kafka")
PYRIGHT_CACHE = Path.home() / ".cache" / "flowport" / "pyright"
#: Tasks whose return type is honestly ``Any`` (fetch_one: a row, dict or tuple, or None).
ANY_RETURNS = {("sql", "fetch_one")}

#: ``{file: {line: [messages]}}`` for one checker, errors only (notes and warnings apart).
Findings = dict[Path, dict[int, list[str]]]


def _connector_tasks(name: str) -> dict[str, RetryingTask]:
    connector = importlib.import_module(f"flowport_{name}.plugin").connector
    return dict(connector.tasks)


def _expected_lines(path: Path) -> set[int]:
    """Lines whose comment (a real one, not text in a docstring) starts ``# expect-error``."""
    with path.open("rb") as fh:
        return {
            tok.start[0]
            for tok in tokenize.tokenize(fh.readline)
            if tok.type == tokenize.COMMENT and tok.string.startswith("# expect-error")
        }


def _readme_flow() -> str:
    """The python block under '## A flow' in the top-level README.md."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## A flow", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md: no python block under '## A flow'"
    return match.group(1)


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    readme = tmp_path_factory.mktemp("readme") / "readme_flow.py"
    readme.write_text(_readme_flow())
    return {"ok": OK, "bad": BAD, "readme": readme}


@pytest.fixture(scope="module")
def mypy(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Findings:
    cache = tmp_path_factory.mktemp("mypy-cache")
    proc = _run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(cache),
            "--no-color-output",
            "--no-error-summary",
            "--no-pretty",
            *(str(p) for p in files.values()),
        ]
    )
    if proc.returncode not in (0, 1):
        pytest.fail(f"mypy failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    found: Findings = defaultdict(lambda: defaultdict(list))
    for line in proc.stdout.splitlines():
        m = re.match(r"^(.+?):(\d+): error: (.*)$", line)
        if m:
            found[(ROOT / m.group(1)).resolve()][int(m.group(2))].append(m.group(3))
    return found


@pytest.fixture(scope="module")
def pyright(files: dict[str, Path]) -> Findings:
    env = {"PYRIGHT_PYTHON_CACHE_DIR": os.environ.get("PYRIGHT_PYTHON_CACHE_DIR", "")}
    env["PYRIGHT_PYTHON_CACHE_DIR"] = env["PYRIGHT_PYTHON_CACHE_DIR"] or str(PYRIGHT_CACHE)
    cmd = [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable]
    proc = _run([*cmd, *(str(p) for p in files.values())], env)
    start = proc.stdout.find("{")  # the wrapper may print install messages first
    if proc.returncode not in (0, 1) or start < 0:
        pytest.fail(f"pyright failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    report: dict[str, Any] = json.loads(proc.stdout[start:])
    found: Findings = defaultdict(lambda: defaultdict(list))
    for diag in report["generalDiagnostics"]:
        if diag["severity"] in ("error", "warning"):
            line = diag["range"]["start"]["line"] + 1
            found[Path(diag["file"]).resolve()][line].append(
                f"{diag['severity']}: {diag['message']}"
            )
    return found


def _show(found: dict[int, list[str]]) -> str:
    return "\n".join(f"  line {n}: {msg}" for n in sorted(found) for msg in found[n])


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_correct_calls_check_clean(checker: str, request: pytest.FixtureRequest) -> None:
    found: Findings = request.getfixturevalue(checker)
    assert not found[OK], f"{checker} flags correct calls in {OK.name}:\n{_show(found[OK])}"


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_incorrect_calls_are_flagged(checker: str, request: pytest.FixtureRequest) -> None:
    found: Findings = request.getfixturevalue(checker)
    expected = _expected_lines(BAD)
    assert len(expected) >= 4
    flagged = set(found[BAD])
    missed, extra = sorted(expected - flagged), sorted(flagged - expected)
    assert not missed and not extra, (
        f"{checker} on {BAD.name}: not flagged {missed}, flagged but unmarked {extra}\n"
        f"{_show(found[BAD])}"
    )


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_readme_flow_only_trips_on_block_load(
    checker: str, files: dict[str, Path], request: pytest.FixtureRequest
) -> None:
    """The README's '## A flow' as written. Prefect 3.9 types ``Block.load`` (``@async_dispatch``)
    as ``Self | Coroutine[Any, Any, Self]``, so passing its result on is an error to both
    checkers; ok.py narrows the two loads with ``isinstance``. Anything else is a real error."""
    found: Findings = request.getfixturevalue(checker)
    readme = files["readme"].resolve()
    other = {n: m for n, msgs in found[readme].items() for m in msgs if "Coroutine" not in m}
    assert not other, f"{checker} on README.md '## A flow':\n{_show(found[readme])}"


def test_ok_snippet_calls_every_prebuilt_task() -> None:
    tree = ast.parse(OK.read_text())
    imported: dict[str, dict[str, str]] = defaultdict(dict)  # module -> {name: local alias}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                imported[node.module][alias.name] = alias.asname or alias.name
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    missing = []
    for name in CONNECTORS:
        module = importlib.import_module(f"flowport_{name}")
        for task_name, task in _connector_tasks(name).items():
            attrs = [a for a, obj in vars(module).items() if obj is task]
            assert attrs, f"flowport_{name} does not export its task {task_name!r}"
            local = imported[f"flowport_{name}"].get(attrs[0])
            if local is None or local not in called:
                missing.append(f"flowport_{name}.{attrs[0]}")
    assert not missing, f"{OK.name} does not import and call: {', '.join(missing)}"


def test_signature_shows_run_parameters() -> None:
    from flowport_s3 import upload_file

    sig = inspect.signature(upload_file)
    assert list(sig.parameters) == ["bucket", "path", "key", "if_not_exists", "retry_policy"]
    assert sig.parameters["if_not_exists"].kind is inspect.Parameter.KEYWORD_ONLY
    for name in CONNECTORS:
        for task_name, task in _connector_tasks(name).items():
            kinds = {p.kind for p in inspect.signature(task).parameters.values()}
            assert inspect.Parameter.VAR_POSITIONAL not in kinds, (name, task_name)
            assert inspect.Parameter.VAR_KEYWORD not in kinds, (name, task_name)


def test_return_annotations_are_not_any() -> None:
    for name in CONNECTORS:
        for task_name, task in _connector_tasks(name).items():
            returns = inspect.signature(task).return_annotation
            if (name, task_name) in ANY_RETURNS:
                continue
            assert returns is not inspect.Signature.empty, f"{name}.{task_name}: no return type"
            assert returns not in (Any, "Any", "typing.Any"), f"{name}.{task_name} returns Any"
