"""QUIC (RFC 9000) as a binding-update transport: the traffic app over aioquic, its migration
driver, and the stacks a node can run (aioquic, Debian's ngtcp2 examples)."""
