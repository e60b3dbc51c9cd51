"""Reading the lab zone from the correspondent, as a peer looking the MN up would."""

from __future__ import annotations

import time

from testbed.lab import Lab


def dig(lab: Lab, node: str, name: str, rdtype: str = "A") -> list[str]:
    # dig reads /etc/resolv.conf, which `ip netns exec` replaces with the lab's
    cp = lab.runtime(node).run(["dig", "+short", "+search", name, rdtype])
    return sorted(cp.stdout.split())


def wait_published(lab: Lab, ar: str, timeout: float = 15.0) -> None:
    """Until the MN's name resolves to exactly what it holds on ``ar`` in both families: its
    agent's location updates for that network have been applied and none is left to come (the
    agent publishes only a changed set). The lab's named is authoritative, so a query sees an
    update as soon as it is applied; no event tells that, hence the poll."""
    deadline = time.monotonic() + timeout
    while True:
        st = lab.access_state(ar)
        seen = (dig(lab, "cn", "mn.mobile.test", "A"), dig(lab, "cn", "mn.mobile.test", "AAAA"))
        if st.ipv4 and st.ipv6 and seen == (sorted(st.ipv4), sorted(st.ipv6)):
            return
        assert time.monotonic() < deadline, (seen, st)
        time.sleep(0.05)
