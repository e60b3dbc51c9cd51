"""Location management (§4 of the spec): the mobile node keeps its A/AAAA records current.

The MN signs RFC 2136 UPDATEs with SIG(0) (RFC 2931) under a KEY its zone publishes, or with a
TSIG key shared with the server. Modules: ``sig0`` (signing/verification, no I/O), ``keys``
(key files), ``updater`` (the asyncio client), ``provision`` (keys for the lab via BIND's own
tools), ``cli`` (``python -m testbed.mobility.location``).
"""
