"""The one entry point: lint, types, unit-<pkg>, integration-<pkg>, bench, demo, tests.

Packages are discovered: ``shared/`` is ``core``, every ``connectors/<name>/`` or
``plugins/<name>/`` with a pyproject (not starting with ``_``) is ``<name>``. Each unit session
installs one package alone in a fresh venv (proving it installs by itself); integration
sessions add the real-service harness, whose fixtures start the services the tests ask for.

    nox -s tests                 # everything CI runs
    nox -s unit-s3 integration-s3
    nox -s bench -- core         # or sql, s3, gcs, kafka, all
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests"]  # a bare `nox` runs what CI runs, not bench or demo

ROOT = Path(__file__).parent


def _discover(folder: str) -> list[str]:
    where = ROOT / folder
    if not where.is_dir():
        return []
    return sorted(
        p.name
        for p in where.iterdir()
        if (p / "pyproject.toml").is_file() and not p.name.startswith("_")
    )


CONNECTORS = _discover("connectors")
PLUGINS = _discover("plugins")  # behaviour plugins (flowport-metrics), tested like connectors
PACKAGES = {
    "core": "shared",
    **{name: f"connectors/{name}" for name in CONNECTORS},
    **{name: f"plugins/{name}" for name in PLUGINS},
}
# flowport-testing (plugins/testing): the prefect_server fixture and an isolated Prefect home.
TEST_TOOLS = ["pytest>=8", "pytest-timeout>=2.3", "cloudpickle>=3", "./plugins/testing"]
#: The real-service harness (flowport-testing) with the clients and Dask the tests use.
HARNESS = "./plugins/testing[clients,dask]"
BENCH_SCRIPTS = {
    "core": "core_overhead",
    **{name: name for name in CONNECTORS},
    "transfer": "transfer",  # cross-system: every connector, vs dlt, pandas and raw ADBC
    "scale": "scale",  # partitioned SQL -> Parquet on threads and on 1 and 2 Dask workers
}


def _requirements(session: nox.Session, *files: str) -> None:
    for name in files:
        if (ROOT / name).is_file():
            session.install("-r", name)


def _install(session: nox.Session, package: str, *, integration: bool = False) -> None:
    """Install the core, ``package`` (alone) and its test requirements into the session venv."""
    paths = ["./shared[testing]"]
    if package != "core":
        paths.append(f"./{PACKAGES[package]}")
    session.install(*paths, *TEST_TOOLS)
    _requirements(session, f"tests/{package}/requirements.txt")
    if integration:
        session.install(HARNESS)
        _requirements(session, f"tests/{package}/requirements-integration.txt")


def _pytest(session: nox.Session, *paths: str) -> None:
    session.run("pytest", *paths, *session.posargs, env={"PYTHONHASHSEED": "0"})


def _unit(package: str) -> None:
    @nox.session(name=f"unit-{package}")
    def unit(session: nox.Session) -> None:
        _install(session, package)
        env = {}
        if package == "core":
            # Real distributions with real entry points, not patched metadata.
            session.install("./tests/core/fixtures/testplugin")
            dup = Path(session.create_tmp()) / "dup-plugin"
            session.install("--target", str(dup), "./tests/core/fixtures/testplugin_dup")
            env["FLOWPORT_TEST_DUP_PLUGIN_PATH"] = str(dup)
            session.install("prefect-dask")
        session.run("pytest", f"tests/{package}/unit", *session.posargs, env=env)


def _integration(package: str) -> None:
    @nox.session(name=f"integration-{package}")
    def integration(session: nox.Session) -> None:
        _install(session, package, integration=True)
        _pytest(session, f"tests/{package}/integration")


for _package in PACKAGES:
    _unit(_package)
    if (ROOT / "tests" / _package / "integration").is_dir():
        _integration(_package)


@nox.session(name="integration-harness")
def integration_harness(session: nox.Session) -> None:
    """The harness's own tests: every service starts, answers, survives SIGKILL, and leaves."""
    session.install(*TEST_TOOLS, HARNESS)
    _pytest(session, "tests/harness")


@nox.session(name="integration-flows")
def integration_flows(session: nox.Session) -> None:
    """Connectors together in real flows: every connector installed side by side."""
    session.install(
        "./shared[testing]", *(f"./{PACKAGES[c]}" for c in CONNECTORS), *TEST_TOOLS, HARNESS
    )
    _requirements(session, "tests/flows/requirements-integration.txt")
    _pytest(session, "tests/flows/integration")


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")  # pinned: new releases change formatting
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def types(session: nox.Session) -> None:
    """mypy: strict on the core, standard on connectors."""
    others = [p for p in PACKAGES if p != "core"]
    session.install("mypy>=1.13", "./shared[testing]", *(f"./{PACKAGES[p]}" for p in others))
    session.run("mypy", "shared/src", *(f"{PACKAGES[p]}/src" for p in others))


@nox.session(name="typing")
def typing_(session: nox.Session) -> None:
    """mypy and pyright on snippets that call every prebuilt task (tests/typing)."""
    session.install(
        "./shared",
        *(f"./{PACKAGES[c]}" for c in CONNECTORS),
        *TEST_TOOLS,
        "mypy>=1.13",
        "pyright",
        "pyarrow>=19",  # the snippets type Arrow results (stream_query(format="arrow"))
    )
    _pytest(session, "tests/typing")


@nox.session
def bench(session: nox.Session) -> None:
    """``nox -s bench -- core`` (or a connector name, or ``all``); extra args go to the script."""
    args = session.posargs or ["core"]
    names = list(BENCH_SCRIPTS) if args[0] == "all" else [args[0]]
    unknown = [n for n in names if n not in BENCH_SCRIPTS]
    if unknown:
        session.error(f"unknown benchmark {unknown}; choose from {', '.join(BENCH_SCRIPTS)}, all")
    for name in names:
        if name in ("transfer", "scale"):
            session.install("./shared[arrow]", *(f"./{PACKAGES[c]}" for c in CONNECTORS))
        else:
            _install(session, name)
        session.install(HARNESS)
        _requirements(session, f"benchmarks/requirements-{name}.txt")
        session.run("python", f"benchmarks/{BENCH_SCRIPTS[name]}.py", *args[1:])


@nox.session
def demo(session: nox.Session) -> None:
    """Orders: Kafka -> PostgreSQL -> Parquet on S3 and GCS, twice (harness services)."""
    session.install("./shared", *(f"./{PACKAGES[c]}" for c in CONNECTORS), HARNESS)
    _requirements(session, "demo/requirements.txt")
    session.run("python", "-m", "demo.pipeline", *session.posargs)


def _install_docs(session: nox.Session) -> None:
    """Every package (and its extras the docs use), the site tools and the harness."""
    extras = {"core": "[arrow]", "sql": "[postgres]", "kafka": "[arrow]"}
    session.install(*(f"./{path}{extras.get(p, '')}" for p, path in PACKAGES.items()), *TEST_TOOLS)
    session.install(HARNESS)
    _requirements(session, "tests/docs/requirements.txt")


@nox.session
def docs(session: nox.Session) -> None:
    """``mkdocs build --strict`` (pages generated from the code checked too); the site goes to
    .nox/docs/tmp/site unless a path is given: ``nox -s docs -- site/``."""
    _install_docs(session)
    site = session.posargs[0] if session.posargs else str(Path(session.create_tmp()) / "site")
    session.run("mkdocs", "build", "--strict", "--site-dir", site)
    session.run(
        "pytest",
        "tests/docs/test_error_reference.py",
        "tests/docs/test_examples.py::test_every_python_block_is_marked_and_illustrations_are_few",
    )


@nox.session(name="docs-examples")
def docs_examples(session: nox.Session) -> None:
    """Every python example in docs/ runs against the real services it names."""
    _install_docs(session)
    _requirements(session, "tests/docs/requirements-integration.txt")
    _pytest(session, "tests/docs/test_examples.py")


@nox.session
def build(session: nox.Session) -> None:
    """Build every distribution (sdist, then the wheel from it) into dist/, ``twine check`` them,
    and install the s3 and core wheels alone into a fresh venv (tests/docs/test_packaging.py)."""
    import shutil

    session.install("build[uv]", "twine", *TEST_TOOLS)
    _requirements(session, "tests/docs/requirements-build.txt")
    out = ROOT / "dist"
    shutil.rmtree(out, ignore_errors=True)
    for package in PACKAGES.values():
        session.run("python", "-m", "build", "--installer", "uv", "--outdir", str(out), package)
    session.run("twine", "check", "--strict", *(str(p) for p in sorted(out.iterdir())))
    session.run(
        "pytest",
        "tests/docs/test_packaging.py",
        *session.posargs,
        env={"FLOWPORT_DIST_DIR": str(out)},
    )


@nox.session
def tests(session: nox.Session) -> None:
    """Everything CI runs: lint, types, docs, packaging, every unit and integration session,
    the docs' examples and the browser check of Prefect's UI."""
    names = ["lint", "types", "typing", "docs", "build", *(f"unit-{p}" for p in PACKAGES)]
    names += ["integration-harness", "integration-flows"]
    names += [f"integration-{p}" for p in PACKAGES if (ROOT / "tests" / p / "integration").is_dir()]
    names += ["docs-examples", "browser"]
    for name in names:
        session.notify(name)


@nox.session
def browser(session: nox.Session) -> None:
    """Prefect's UI in headless Chromium shows a flowport flow's task runs, artifacts and asset
    events, and flowport's blocks in the catalog (logos, titles, code examples).

    A real ``prefect server start``, PostgreSQL and the S3 gateway from the harness; Debian's
    chromium driven by Playwright (``/usr/bin/chromium``, provisioned by ``python -m
    flowport_testing install all``; no browser download). Screenshots: tests/browser/output/.
    """
    session.install(
        "./shared",
        "./connectors/s3",
        "./connectors/sql[postgres,lineage]",
        "./plugins/testing[clients]",
        "pytest>=8",
        "pytest-timeout>=2.3",
        "-r",
        "tests/browser/requirements.txt",
    )
    session.run("pytest", "tests/browser", *session.posargs)
