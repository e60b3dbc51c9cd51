"""Movement detection on a mobile node (spec §3): netlink + Router Advertisements → events.

Three layers, I/O only in the last:

- ``observations``: what was seen (``LinkObs``, ``AddrObs``, ``RAObs``, ``DhcpObs``,
  ``Dhcp6Obs``); the packets behind them are decoded by ``testbed.decode.nd``,
  ``testbed.decode.dhcp`` and ``testbed.decode.dhcp6``.
- ``core``: ``DetectionCore``, the decisions, I/O-free with time passed in.
- ``detector``: ``MovementDetector``, the sockets and netlink around the core.
"""

from testbed.mobility.detection.core import DetectionCore
from testbed.mobility.detection.detector import (
    DetectorOptions,
    EventSink,
    MovementDetector,
    parse_ifaces,
    probe_rtt,
)
from testbed.mobility.detection.observations import (
    AddrObs,
    Dhcp6Obs,
    DhcpObs,
    LinkObs,
    Observation,
    PrefixInfo,
    RAObs,
    Stamp,
)

__all__ = [
    "AddrObs", "DetectionCore", "DetectorOptions", "Dhcp6Obs", "DhcpObs", "EventSink", "LinkObs",
    "MovementDetector", "Observation", "PrefixInfo", "RAObs", "Stamp", "parse_ifaces", "probe_rtt",
]  # fmt: skip
