"""Key provisioning for the lab: the MN's SIG(0) key pairs and a TSIG key, made by BIND's tools.

BIND's own ``dnssec-keygen`` and ``tsig-keygen`` are used (not the in-process generator in
``keys``) so the lab exercises the files an operator would have; ``keys.load_key`` reads them.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import MissingDependency
from testbed.host.netns import run
from testbed.mobility.location.keys import load_bind_keypair, load_tsig
from testbed.mobility.location.sig0 import algorithm_from_text


@dataclass(frozen=True)
class ProvisionedKey:
    """One SIG(0) key pair on disk and the KEY record the zone must publish."""

    algorithm: str
    key_file: Path
    private_file: Path
    key_tag: int
    key_rr: str  # zone-file line: "mn.mobile.test. 300 IN KEY 512 3 13 ..."


@dataclass(frozen=True)
class ProvisionedKeys:
    directory: Path
    name: str
    keys: tuple[ProvisionedKey, ...]
    tsig_file: Path | None  # named.conf ``key`` clause (include it in named.conf)
    tsig_name: str | None

    @property
    def key_rrs(self) -> list[str]:
        """The KEY records to put in the zone (one per algorithm)."""
        return [k.key_rr for k in self.keys]

    def key_for(self, algorithm: str) -> ProvisionedKey:
        alg = algorithm_from_text(algorithm)
        for k in self.keys:
            if algorithm_from_text(k.algorithm) == alg:
                return k
        raise KeyError(f"no {alg.name} key provisioned for {self.name}")


def _tool(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise MissingDependency(name, package)
    return path


def _generate(keygen: str, d: Path, fqdn: str, algorithm: str, ttl: int) -> ProvisionedKey:
    alg = algorithm_from_text(algorithm)
    cp = run(None, [keygen, "-q", "-K", str(d), "-a", alg.name, "-T", "KEY", "-n", "HOST", fqdn],
             timeout=30)
    return _loaded(alg.name, Path(str(d / cp.stdout.strip().splitlines()[-1]) + ".key"), ttl)


def _loaded(algorithm: str, key_file: Path, ttl: int) -> ProvisionedKey:
    """A BIND key pair on disk (``K<name>.+<alg>+<tag>.key`` and ``.private``)."""
    key = load_bind_keypair(key_file)
    private_file = key_file.with_name(key_file.name.removesuffix(".key") + ".private")
    return ProvisionedKey(algorithm, key_file, private_file, key.key_tag, key.public.to_text(ttl))


def ensure_sig0_keys(dir: Path, name: str, algorithms: Sequence[str],  # noqa: A002
                     ttl: int = 300) -> tuple[list[ProvisionedKey], bool]:
    """``name``'s SIG(0) key pairs in ``dir``, one per algorithm: a pair already there is kept,
    a missing one is made (with BIND's dnssec-keygen). Returns them and whether any was made.

    Run on the mobile node itself (``testbed deploy``'s mobile_node role): the private key
    never leaves it, only the KEY record goes to the zone."""
    d = Path(dir).absolute()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    fqdn = name if name.endswith(".") else name + "."
    out, made = [], False
    for text in algorithms:
        alg = algorithm_from_text(text)
        found = sorted(d.glob(f"K{fqdn}+{int(alg):03d}+*.key"))
        if found:
            out.append(_loaded(alg.name, found[0], ttl))
        else:
            out.append(_generate(_tool("dnssec-keygen", "bind9-utils"), d, fqdn, text, ttl))
            made = True
    return out, made


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m testbed.mobility.location.provision --dir D --name N --algorithms A,B``:
    ``ensure_sig0_keys``, its result as one JSON object on stdout."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m testbed.mobility.location.provision",
                                description=ensure_sig0_keys.__doc__)
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--algorithms", default="ECDSAP256SHA256")
    p.add_argument("--ttl", type=int, default=300)
    a = p.parse_args(argv)
    keys, made = ensure_sig0_keys(a.dir, a.name, a.algorithms.split(","), a.ttl)
    print(json.dumps({"changed": made, "keys": [
        {"algorithm": k.algorithm, "private_file": str(k.private_file), "key_tag": k.key_tag,
         "key_rr": k.key_rr} for k in keys]}))
    return 0


def provision_keys(
    dir: Path,  # noqa: A002 - the name the lab's call site uses
    name: str,
    algorithms: Sequence[str] = ("ECDSAP256SHA256",),
    *,
    tsig_name: str | None = "testbed-update",
    ttl: int = 300,
) -> ProvisionedKeys:
    """Generate ``name``'s SIG(0) keys (one per algorithm) and a hmac-sha256 TSIG key in ``dir``."""
    keygen = _tool("dnssec-keygen", "bind9-utils")
    tsig_keygen = _tool("tsig-keygen", "bind9") if tsig_name else None
    d = Path(dir).absolute()
    d.mkdir(parents=True, exist_ok=True)
    fqdn = name if name.endswith(".") else name + "."
    made = [_generate(keygen, d, fqdn, text, ttl) for text in algorithms]
    tsig_file = None
    if tsig_keygen and tsig_name:
        cp = run(None, [tsig_keygen, "-a", "hmac-sha256", tsig_name], timeout=30)
        tsig_file = d / f"{tsig_name}.tsig.key"
        tsig_file.write_text(cp.stdout)
        tsig_file.chmod(0o600)
        load_tsig(tsig_file)  # fail here, not in named, if the format ever changes
    return ProvisionedKeys(d, fqdn, tuple(made), tsig_file, tsig_name)


if __name__ == "__main__":
    raise SystemExit(main())
