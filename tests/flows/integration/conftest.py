"""Cross-connector flows: every connector installed, every service from the harness."""

from tests.services.fixtures import *  # noqa: F403
