"""MariaDB 10.11 from Debian's packages: our own ``mariadbd`` on a free loopback port.

``--no-defaults`` keeps the system my.cnf (socket in /run, port 3306) out of the way.
"""

from __future__ import annotations

import pwd
import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

from . import versions
from .base import Service, apt_install, port_open, run


class MariaDB(Service):
    """MariaDB with user/database ``flowport`` (password ``flowport``, all privileges)."""

    name: ClassVar[str] = "mariadb"
    kind: ClassVar[str] = "mariadb"
    version = versions.MARIADB_VERSION
    user = "flowport"
    password = "flowport"  # noqa: S105  (a throw-away server on 127.0.0.1)
    database = "flowport"

    @property
    def data_dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "data"

    @property
    def socket(self) -> Path:
        """Unix socket of this server (root can log in through it without a password)."""
        assert self.workdir is not None
        return self.workdir / "mysqld.sock"

    @property
    def url(self) -> str:
        return f"mysql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def sqlalchemy_url(self) -> str:
        """SQLAlchemy URL using the PyMySQL driver."""
        return self.url.replace("mysql://", "mysql+pymysql://", 1)

    def install(self) -> None:
        if not (shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists()):
            apt_install([versions.MARIADB_APT_PACKAGE])

    def prepare(self) -> None:
        assert self.workdir is not None
        pw = pwd.getpwnam("mysql")
        shutil.chown(self.workdir, pw.pw_uid, pw.pw_gid)
        run(
            [
                "mariadb-install-db",
                "--no-defaults",
                "--user=mysql",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                f"--datadir={self.data_dir}",
            ],
            "mariadb-install-db",
            cwd=self.workdir,
        )

    def command(self) -> list[str]:
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        return [
            mariadbd,
            "--no-defaults",
            "--user=mysql",
            f"--bind-address={self.host}",
            f"--port={self.port}",
            f"--datadir={self.data_dir}",
            f"--socket={self.socket}",
            f"--pid-file={self.workdir}/mariadbd.pid",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M",
            "--skip-log-bin",
        ]

    def _client(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["mariadb-admin", "--no-defaults", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )

    def healthy(self) -> bool:
        if self.workdir is None or not self.socket.exists():
            return False
        if not port_open(self.host, self.port):
            return False
        return self._client(f"--socket={self.socket}", "-uroot", "ping").returncode == 0

    def after_first_start(self) -> None:
        sql = (
            f"CREATE DATABASE IF NOT EXISTS {self.database};"
            f"CREATE USER '{self.user}'@'%' IDENTIFIED BY '{self.password}';"
            f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'%' WITH GRANT OPTION;"
            "FLUSH PRIVILEGES;"
        )
        run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-e", sql],
            "mariadb user setup",
            timeout=60,
        )

    def env(self) -> dict[str, str]:
        return {
            "FLOWPORT_MARIADB_URL": self.url,
            "FLOWPORT_MARIADB_SQLALCHEMY_URL": self.sqlalchemy_url,
        }
