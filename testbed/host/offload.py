"""UDP segmentation offload of a node's interfaces (``ethtool -K DEV tx-udp-segmentation off``,
through pyroute2's ethtool ioctls, in the calling process's network namespace).

A sender using UDP GSO (the ``UDP_SEGMENT`` socket option, as ngtcp2 does) hands the kernel one
buffer of many datagrams. A veth advertises the feature, so the buffer crosses it whole: a
capture on the other end, a router forwarding it, or a User-Mode Linux guest reading the link's
raw socket sees one oversized UDP packet instead of the datagrams on the wire. With the feature
off on the sender's interface, the kernel segments the buffer in software before the device
(``validate_xmit_skb``), which is also before every packet tap: everything after it sees one
packet per datagram.
"""

from __future__ import annotations

from collections.abc import Iterable

FEATURE = "tx-udp-segmentation"


def disable_udp_segmentation(ifnames: Iterable[str]) -> list[str]:
    """Turn the feature off on each interface that has it on; returns those changed."""
    from pyroute2.ethtool import Ethtool

    changed = []
    ethtool = Ethtool()
    try:
        for ifname in ifnames:
            features = ethtool.get_features(ifname)
            feature = features.features.get(FEATURE)
            if feature is None or not feature.enable:
                continue
            feature.enable = False
            ethtool.set_features(ifname, features)
            if not ethtool.get_features(ifname).features[FEATURE].enable:
                changed.append(ifname)
    finally:
        ethtool.close()
    return changed


def udp_segmentation(ifname: str) -> bool | None:
    """Is the feature on for ``ifname`` (None: the device has no such feature)?"""
    from pyroute2.ethtool import Ethtool

    ethtool = Ethtool()
    try:
        feature = ethtool.get_features(ifname).features.get(FEATURE)
        return None if feature is None else bool(feature.enable)
    finally:
        ethtool.close()
