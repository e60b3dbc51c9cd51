"""Where a lab runs: on the host (the default), or inside one User-Mode-Linux kernel.

``testbed up|run … --machine uml`` boots a *lab machine*: one UML kernel whose namespaces hold
every node of the lab, so each node's stack is that kernel's host stack (SCTP, netem, …) on a
host whose own kernel lacks them. The host keeps a small state for the lab (``machine: uml``),
and every later command on it (``status``, ``exec``, ``move``, ``down``, …) is run inside the
machine by the same ``testbed`` command; ``clean`` removes the machine and all it held.
"""
