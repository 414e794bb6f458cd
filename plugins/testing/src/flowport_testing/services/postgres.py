"""PostgreSQL 15 from Debian's packages, run as the ``postgres`` user on a free loopback port.

initdb refuses root, so initdb and the postmaster run as ``postgres`` (``Popen(user=...)``,
which keeps the postmaster as our direct child: kill/pause hit it, not a wrapper).
"""

from __future__ import annotations

import pwd
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from . import versions
from .base import Service, apt_install, process_start_time, run

PG_BIN = Path(f"/usr/lib/postgresql/{versions.POSTGRES_MAJOR}/bin")


class Postgres(Service):
    """PostgreSQL with role/database ``flowport`` (password ``flowport``, superuser)."""

    name: ClassVar[str] = "postgres"
    kind: ClassVar[str] = "postgresql"
    version = versions.POSTGRES_MAJOR
    stop_signal: ClassVar[signal.Signals] = signal.SIGINT  # fast shutdown; SIGTERM waits
    user = "flowport"
    password = "flowport"  # noqa: S105  (a throw-away server on 127.0.0.1)
    database = "flowport"

    @property
    def data_dir(self) -> Path:
        """The cluster directory (also holds the unix socket)."""
        assert self.workdir is not None
        return self.workdir / "data"

    @property
    def dsn(self) -> str:
        """libpq URL for psycopg / psql."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def url(self) -> str:
        return self.dsn

    @property
    def sqlalchemy_url(self) -> str:
        """SQLAlchemy URL using the psycopg 3 driver."""
        return self.dsn.replace("postgresql://", "postgresql+psycopg://", 1)

    def install(self) -> None:
        if not (PG_BIN / "initdb").exists():
            apt_install([versions.POSTGRES_APT_PACKAGE])

    def prepare(self) -> None:
        assert self.workdir is not None
        pw = pwd.getpwnam("postgres")
        shutil.chown(self.workdir, pw.pw_uid, pw.pw_gid)
        run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ],
            "initdb",
            user="postgres",
            cwd=self.workdir,
        )

    def before_spawn(self) -> None:
        # After a SIGKILL the postmaster.pid stays; PostgreSQL removes it itself unless that
        # PID still exists (a not yet reaped zombie does), so drop it when it names no server.
        lock = self.data_dir / "postmaster.pid"
        if lock.exists():
            pid = int(lock.read_text().split("\n", 1)[0] or 0)
            if pid and process_start_time(pid) is None:
                lock.unlink()

    def command(self) -> list[str]:
        return [
            str(PG_BIN / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            f"unix_socket_directories={self.data_dir}",
        ]

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": "postgres", "group": "postgres", "extra_groups": []}

    def _psql(self, *args: str, user: str = "postgres") -> subprocess.CompletedProcess[str]:
        return run(
            [
                str(PG_BIN / "psql"),
                "-X",
                "-q",
                "-h",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-U",
                user,
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                *args,
            ],
            "psql",
            user="postgres",
            timeout=60,
        )

    def healthy(self) -> bool:
        if self.workdir is None:
            return False
        proc = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)],
            check=False,
            capture_output=True,
            timeout=10,
        )
        return proc.returncode == 0

    def after_first_start(self) -> None:
        self._psql(
            "-c",
            f"CREATE ROLE {self.user} LOGIN SUPERUSER PASSWORD '{self.password}'",
            "-c",
            f"CREATE DATABASE {self.database} OWNER {self.user}",
        )

    def env(self) -> dict[str, str]:
        return {
            "FLOWPORT_PG_URL": self.dsn,
            "FLOWPORT_PG_SQLALCHEMY_URL": self.sqlalchemy_url,
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.database,
        }
