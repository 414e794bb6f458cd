"""temporary shim: use flowport_testing (its fixtures load by themselves: pytest11 entry point)."""

from flowport_testing.fixtures import *  # noqa: F403
from flowport_testing.fixtures import _service  # noqa: F401
