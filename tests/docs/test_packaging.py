"""Release packaging: every distribution builds, shares the one version, carries the metadata
an index shows, and installs from its wheel alone into a fresh venv.

``nox -s build`` builds into ``dist/`` and points ``FLOWPORT_DIST_DIR`` at it; run by hand, the
wheels are built into a temporary folder first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
VERSION = (ROOT / "VERSION").read_text().strip()


def _packages() -> dict[str, Path]:
    """Distribution name -> folder: the core and every connector / plugin (not the template)."""
    folders = [ROOT / "shared"] + [
        p
        for kind in ("connectors", "plugins")
        if (ROOT / kind).is_dir()
        for p in sorted((ROOT / kind).iterdir())
        if (p / "pyproject.toml").is_file() and not p.name.startswith("_")
    ]
    return {_project(p)["name"]: p for p in folders}


def _project(folder: Path) -> dict[str, Any]:
    return dict(tomllib.loads((folder / "pyproject.toml").read_text())["project"])


PACKAGES = _packages()


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding a wheel and an sdist of every distribution."""
    given = os.environ.get("FLOWPORT_DIST_DIR")
    if given:
        yield Path(given)
        return
    out = tmp_path_factory.mktemp("dist")
    for folder in PACKAGES.values():
        subprocess.run(
            [sys.executable, "-m", "build", "--installer", "uv", "--outdir", str(out), str(folder)],
            check=True,
            capture_output=True,
        )
    yield out


def _wheel(dist: Path, name: str) -> Path:
    found = sorted(dist.glob(f"{_norm(name)}-*.whl"))
    assert len(found) == 1, f"expected one wheel of {name} in {dist}, found {found}"
    return found[0]


def test_every_distribution_builds_a_wheel_and_sdist_at_the_one_version(dist: Path) -> None:
    for name in PACKAGES:
        wheel = _wheel(dist, name)
        assert wheel.name.startswith(f"{_norm(name)}-{VERSION}-"), wheel.name
        assert (dist / f"{_norm(name)}-{VERSION}.tar.gz").is_file(), name
        with zipfile.ZipFile(wheel) as zf:
            meta = zf.read(f"{_norm(name)}-{VERSION}.dist-info/METADATA").decode()
            licence = [n for n in zf.namelist() if n.endswith("licenses/LICENSE")]
        assert f"\nVersion: {VERSION}\n" in meta
        assert "License-Expression: Apache-2.0" in meta
        assert "Project-URL: Documentation, " in meta and "Project-URL: Changelog, " in meta
        assert "Classifier: Programming Language :: Python :: 3.10" in meta
        assert "Description-Content-Type: text/markdown" in meta
        assert licence, f"{wheel.name} ships no LICENSE"


def test_the_s3_and_core_wheels_install_alone_into_a_fresh_venv(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([*_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    wheels = [str(_wheel(dist, "flowport")), str(_wheel(dist, "flowport-s3"))]
    subprocess.run([*_uv(), "pip", "install", "-q", "--python", str(python), *wheels], check=True)
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PYTHONPATH", None)  # nothing from the checkout: only what the wheels installed
    where = subprocess.run(
        [str(python), "-c", "import flowport_s3 as m; print(m.__file__, m.S3Bucket)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    ).stdout
    assert str(venv) in where and "S3Bucket" in where
    version = subprocess.run(
        [str(venv / "bin" / "flowport"), "--version"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    ).stdout
    assert version.strip() == f"flowport {VERSION}"
    listed = subprocess.run(
        [str(venv / "bin" / "flowport"), "plugins", "list"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    ).stdout
    assert re.search(rf"^s3 {re.escape(VERSION)}: ok", listed, re.M), listed


def test_every_pyproject_reads_the_one_version_and_shares_the_release_metadata() -> None:
    template = ROOT / "connectors" / "_template"
    urls = None
    for folder in [*PACKAGES.values(), template]:
        project = tomllib.loads((folder / "pyproject.toml").read_text())
        meta, hatch = project["project"], project["tool"]["hatch"]
        assert "version" not in meta and meta["dynamic"] == ["version"], folder
        assert (folder / hatch["version"]["path"]).resolve() == ROOT / "VERSION", folder
        assert meta["license"] == "Apache-2.0" and meta["readme"] == "README.md", folder
        assert (folder / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes(), folder
        assert "Typing :: Typed" in meta["classifiers"], folder
        urls = urls or meta["urls"]
        assert meta["urls"] == urls, f"{folder}: project URLs differ from the core's"
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]|rc)?\d*", VERSION)
    assert f"## [{VERSION}]" in (ROOT / "CHANGELOG.md").read_text()


def test_readme_install_lines_name_folders_and_extras_that_exist() -> None:
    """``pip install ./shared ./connectors/sql[postgres]`` lines in the READMEs must work."""
    readmes = [ROOT / "README.md", *(p / "README.md" for p in PACKAGES.values())]
    seen = 0
    for readme in readmes:
        for line in readme.read_text().splitlines():
            if not line.lstrip().startswith("pip install"):
                continue
            for arg in line.split("#")[0].split()[2:]:
                arg = arg.strip("'\"")
                if not arg.startswith("./"):
                    continue
                seen += 1
                path, _, extras = arg.partition("[")
                folder = ROOT / path
                assert (folder / "pyproject.toml").is_file(), f"{readme}: {arg}"
                declared = _project(folder)
                for extra in filter(None, extras.rstrip("]").split(",")):
                    assert extra in declared.get("optional-dependencies", {}), f"{readme}: {arg}"
    assert seen >= len(PACKAGES)
