"""testbed: an emulation lab for transport-layer mobility (Eddy/Ishac/Atiquzzaman 2004).

Package map (one concern per sub-package, lower layers never import upper ones):
  model/       topology data, schema and addressing (no I/O)
  backends/    turning a topology into namespaces and links (Mininet)
  services/    real daemons per node: named, dhcpd, radvd, dhclient
  mobility/    movement detection, location management, binding-update policy
  sctp/        kernel SCTP sockets, VM nodes, traffic, binding-update driver
  capture/     tcpdump control
  decode/      pcap, SCTP and DNS decoders (pure)
  conformance/ Appendix-A rules, checker, timeline
  report/      HTML/SVG report
  cli/         the `testbed` command
"""

__version__ = "0.1.0"
