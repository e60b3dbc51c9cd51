"""Deploying the architecture to real hosts with Ansible, and judging it there.

``inventory`` (a topology -> an Ansible inventory), ``render`` (each role's files and daemons,
by the lab's own service renderers), ``package`` (the package as hosts install it), ``ansible``
(ansible-runner: progress, summary), ``deploy`` (``testbed deploy``), ``clock`` (each host's
clock against the controller's), ``remote`` (``testbed run --inventory``: a scenario on
deployed hosts, captures fetched and checked). The playbooks themselves are ``playbooks/``.
"""
