"""temporary shim: use flowport_testing (`python -m flowport_testing`, `flowport-services`)."""

import sys

from flowport_testing.__main__ import main

sys.exit(main())
