"""ISC ``dhclient`` on the mobile node, one per access interface, with testbed's own script.

The stock dhclient-script rewrites the host's /etc/resolv.conf, so the lab passes its own
(``testbed/data/dhclient-script``): it configures the lease with ``ip`` and appends a JSON line
per lease event to ``<dir>/<ifname>.events`` for the mobility agent.
"""

from __future__ import annotations

from pathlib import Path

from testbed.services.base import Daemon

SCRIPT = Path(__file__).resolve().parents[1] / "data" / "dhclient-script"


class Dhclient(Daemon):
    NAME = "dhclient"
    BINARIES = (("dhclient", "isc-dhcp-client"),)

    def __init__(self, node, directory: Path, ifname: str, metric: int = 100) -> None:
        super().__init__(node, directory, instance=ifname)
        self.ifname, self.metric = ifname, metric
        self.leases = directory / f"{ifname}.leases"
        self.pidfile = directory / f"{ifname}.pid"
        self.events = directory / f"{ifname}.events"

    def argv(self) -> list[str]:
        # env carries the script's parameters; -d foreground, -1 would give up after one try
        return [
            "env",
            f"TESTBED_DHCP_EVENTS={self.events}",
            f"TESTBED_ROUTE_METRIC={self.metric}",
            "dhclient",
            "-4",
            "-d",
            "-v",
            "-sf",
            str(SCRIPT),
            "-lf",
            str(self.leases),
            "-pf",
            str(self.pidfile),
            self.ifname,
        ]
