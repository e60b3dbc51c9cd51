"""testbed: an emulation lab for transport-layer mobility (Eddy/Ishac/Atiquzzaman 2004).

Package map (one concern per sub-package, lower layers never import upper ones; README.md has
the path of one movement event through them):
  model/       topology data, schema and addressing (no I/O)
  host/        named netns, process control, polling, JSON lines
  runtimes/    node runtimes behind one protocol: namespace, uml, qemu (+ guest agent)
  backends/    turning a topology into nodes and links: mininet (namespaces), docker
  services/    real daemons per node: named, dhcpd, radvd, dhcpcd, mobility agent, binding
  lab/         the Lab: nodes, wiring, build, moves, teardown
  machine/     a whole lab inside one UML kernel (--machine uml)
  mobility/    movement detection, location management, binding-update policy and process
  sctp/        kernel SCTP socket API, traffic app, binding-update driver
  mptcp/       MPTCP path manager over generic netlink, socket info, binding-update driver
  traffic/     the numbered messages of every traffic app; the TCP/MPTCP stream app
  capture/     tcpdump control
  decode/      pcap, SCTP, TCP/MPTCP, DNS, RS/RA and DHCP decoders (pure)
  conformance/ one pass over the captures, Appendix-A and MPTCP rules, checker, timelines
  report/      HTML/SVG report
  scenario/    scenario files, runner, traffic
  cli/         the `testbed` command
"""

__version__ = "0.1.0"
