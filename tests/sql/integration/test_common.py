"""The shared test bodies, on PostgreSQL and on MariaDB (parametrized ``db`` fixture)."""

from tests.sql.common import *  # noqa: F403
