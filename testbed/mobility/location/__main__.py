"""Entry point: ``python -m testbed.mobility.location``."""

import sys

from testbed.mobility.location.cli import main

sys.exit(main())
