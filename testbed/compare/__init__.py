"""``testbed compare``: one movement, every transport: the same topology, moves and traffic run
once per transport (SCTP, MPTCP, QUIC, plain TCP), each judged on the wire, side by side in
``compare.json`` and ``compare.html``."""
