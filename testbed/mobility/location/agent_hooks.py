"""The agent's location hooks (§4): publish the MN's usable addresses with a signed UPDATE.

``from_env`` is what the lab passes as ``--location-hooks``; configuration comes from the
environment so the agent's command line stays generic:

  TESTBED_LOC_SERVER   name server address(es), comma-separated, tried in order when the
                       MN has no route to one (an IPv6-only network and an IPv4 server)
                                                    TESTBED_LOC_ZONE   zone (mobile.test)
  TESTBED_LOC_NAME     the MN's name                TESTBED_LOC_KEY    SIG(0) private key file
  TESTBED_LOC_TSIG     TSIG key file (instead)      TESTBED_LOC_LOG    JSON-lines outcome log
  TESTBED_LOC_VALIDITY signature window, seconds    TESTBED_LOC_PASSPHRASE_ENV  env var with the
                                                    passphrase of an encrypted PEM key
  TESTBED_LOC_COOPERATING  addresses to point the name at on departure (comma-separated)

Every outcome (rcode, attempts, round trip) is appended to the log with wall and monotonic
times, so the scenario's timeline can place "DNS acked" beside the agent's events.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
from pathlib import Path

from testbed.errors import ConfigError
from testbed.host import jsonlines
from testbed.mobility.location.keys import load_key, load_tsig
from testbed.mobility.location.sig0 import Validity
from testbed.mobility.location.updater import AddressSet, LocationUpdater, UpdateResult

log = logging.getLogger("testbed.location")


def publishable(addresses: list[str]) -> tuple[list[str], list[str]]:
    """(A, AAAA) worth publishing: no link-local, loopback or multicast addresses."""
    a, aaaa = [], []
    for text in addresses:
        ip = ipaddress.ip_address(text.split("/")[0])
        if ip.is_link_local or ip.is_loopback or ip.is_multicast or ip.is_unspecified:
            continue
        (a if ip.version == 4 else aaaa).append(str(ip))
    return sorted(a), sorted(aaaa)


class DnsLocationHooks:
    def __init__(self, updater: LocationUpdater, log_path: Path | None) -> None:
        self.updater = updater
        self.log_path = log_path
        self.last: tuple[list[str], list[str]] | None = None

    async def on_configured(self, addresses: list[str]) -> None:
        a, aaaa = publishable(addresses)
        if (a, aaaa) == self.last:
            return
        self.last = (a, aaaa)
        self._record("update", await self.updater.update(a, aaaa))

    async def on_depart(self) -> None:
        self._record("withdraw", await self.updater.withdraw())

    def _record(self, op: str, res: UpdateResult) -> None:
        entry = {
            "event": "location",
            "op": op,
            "wall": time.time(),
            "mono": time.monotonic(),
            **res.to_dict(),
        }
        log.info("location %s: %s", op, json.dumps(res.to_dict(), default=str))
        if self.log_path:
            jsonlines.append(self.log_path, entry)


def from_env() -> DnsLocationHooks:
    env = os.environ
    try:
        server, zone, name = env["TESTBED_LOC_SERVER"], env["TESTBED_LOC_ZONE"], env["TESTBED_LOC_NAME"]
    except KeyError as e:
        raise ConfigError("environment", e.args[0], "not set", "the lab sets it for the agent") from None
    key = tsig = None
    if env.get("TESTBED_LOC_TSIG"):
        tsig = load_tsig(env["TESTBED_LOC_TSIG"])
    elif env.get("TESTBED_LOC_KEY"):
        pass_env = env.get("TESTBED_LOC_PASSPHRASE_ENV")
        key = load_key(env["TESTBED_LOC_KEY"], passphrase=env.get(pass_env) if pass_env else None)
    else:
        raise ConfigError("environment", "TESTBED_LOC_KEY", "no key given", "set a SIG(0) or TSIG key")
    coop = [x for x in env.get("TESTBED_LOC_COOPERATING", "").split(",") if x]
    validity = float(env.get("TESTBED_LOC_VALIDITY", "60"))
    server, *alternates = [x for x in server.split(",") if x] or [""]
    updater = LocationUpdater(
        server,
        zone,
        name,
        key=key,
        tsig=tsig,
        validity=Validity(validity, validity),
        cooperating=AddressSet.of(*publishable(coop)) if coop else None,
        alternates=tuple(alternates),
    )
    log_path = Path(env["TESTBED_LOC_LOG"]) if env.get("TESTBED_LOC_LOG") else None
    return DnsLocationHooks(updater, log_path)
