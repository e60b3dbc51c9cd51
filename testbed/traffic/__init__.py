"""Traffic apps run on the nodes: the numbered-message payload they share (``messages``) and the
stream app over TCP or Multipath TCP (``stream``); the SCTP app is ``testbed.sctp.traffic``."""
