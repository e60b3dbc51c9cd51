"""``python -m testbed.mobility.location update|withdraw``: one signed UPDATE, JSON on stdout.

Exit status 0 when the server answered NOERROR, 1 for any other answer or none, 2 for bad
input. Key passphrases come from an environment variable (never the command line, which other
users can read in /proc) or, on a terminal, from a prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Sequence

from testbed.errors import ConfigError, TestbedError
from testbed.mobility.location.keys import load_key, load_tsig
from testbed.mobility.location.sig0 import Validity
from testbed.mobility.location.updater import (
    AddressSet,
    LocationUpdater,
    RetryPolicy,
    UpdateResult,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m testbed.mobility.location", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for cmd, text in (
        ("update", "replace the name's A/AAAA records with the given addresses"),
        ("withdraw", "announced departure: delete the records or point them at --to-a/--to-aaaa"),
    ):
        s = sub.add_parser(cmd, help=text)
        s.add_argument("--server", required=True, help="IP address of the primary server")
        s.add_argument("--port", type=int, default=53)
        s.add_argument("--zone", required=True)
        s.add_argument("--name", required=True, help="owner name to update (the MN's name)")
        s.add_argument("--key", help="SIG(0) key: K*.key/K*.private pair or PEM")
        s.add_argument("--tsig", help="TSIG key file (tsig-keygen output); signs with TSIG")
        s.add_argument("--passphrase-env", metavar="VAR", help="env var holding the PEM passphrase")
        s.add_argument("--ttl", type=int, default=30)
        s.add_argument("--validity", type=float, default=60.0, help="SIG(0) window ±seconds")
        s.add_argument("--attempts", type=int, default=4)
        s.add_argument("--timeout", type=float, default=0.5, help="first attempt's wait (s)")
        if cmd == "update":
            s.add_argument("--a", action="append", default=[], metavar="IPV4")
            s.add_argument("--aaaa", action="append", default=[], metavar="IPV6")
        else:
            s.add_argument("--to-a", action="append", default=[], metavar="IPV4")
            s.add_argument("--to-aaaa", action="append", default=[], metavar="IPV6")
    return p


def _passphrase(var: str | None) -> bytes | None:
    if var:
        if var not in os.environ:
            raise ConfigError("--passphrase-env", var, "variable not set")
        return os.environ[var].encode()
    if sys.stdin.isatty():
        return getpass.getpass("key passphrase: ").encode()
    return None


def make_updater(args: argparse.Namespace) -> LocationUpdater:
    if not args.key and not args.tsig:
        raise ConfigError("command line", "--key", "no key given", "pass --key or --tsig")
    key = None
    if args.key and not args.tsig:
        key = load_key(args.key, args.name, lambda: _passphrase(args.passphrase_env))
    cooperating = None
    if args.command == "withdraw" and (args.to_a or args.to_aaaa):
        cooperating = AddressSet.of(args.to_a, args.to_aaaa)
    return LocationUpdater(
        args.server,
        args.zone,
        args.name,
        key=key,
        tsig=load_tsig(args.tsig) if args.tsig else None,
        port=args.port,
        ttl=args.ttl,
        validity=Validity(args.validity, args.validity),
        retry=RetryPolicy(attempts=args.attempts, timeout=args.timeout),
        cooperating=cooperating,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        updater = make_updater(args)
        result: UpdateResult = asyncio.run(
            updater.update(args.a, args.aaaa) if args.command == "update" else updater.withdraw()
        )
    except TestbedError as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        return e.exit_code
    print(json.dumps(result.to_dict()))
    return 0 if result.ok else 1
