"""The lab: build a topology, move its mobile node, tear it down (see ``lab.Lab``).

Modules, one concern each: ``nodes`` (runtimes), ``wiring`` (daemons per node), ``build``,
``mobile`` (attach / detach / move), ``teardown`` (down, clean).
"""

from testbed.lab.lab import Lab
from testbed.lab.mobile import AccessState, MoveMode
from testbed.lab.teardown import clean, clean_held, teardown_leftover, teardown_state

__all__ = ["AccessState", "Lab", "MoveMode", "clean", "clean_held", "teardown_leftover", "teardown_state"]
