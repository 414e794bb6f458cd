"""The shared test bodies on SQLite (the same ones run on PostgreSQL and MariaDB)."""

from tests.sql.common import *  # noqa: F403
