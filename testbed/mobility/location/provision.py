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
    made: list[ProvisionedKey] = []
    for text in algorithms:
        alg = algorithm_from_text(text)
        cp = run(
            None,
            [keygen, "-q", "-K", str(d), "-a", alg.name, "-T", "KEY", "-n", "HOST", fqdn],
            timeout=30,
        )
        base = str(d / cp.stdout.strip().splitlines()[-1])  # no with_suffix: "+013+NNNNN"
        key_file, private_file = Path(base + ".key"), Path(base + ".private")
        key = load_bind_keypair(key_file)
        made.append(ProvisionedKey(alg.name, key_file, private_file, key.key_tag, key.public.to_text(ttl)))
    tsig_file = None
    if tsig_keygen and tsig_name:
        cp = run(None, [tsig_keygen, "-a", "hmac-sha256", tsig_name], timeout=30)
        tsig_file = d / f"{tsig_name}.tsig.key"
        tsig_file.write_text(cp.stdout)
        tsig_file.chmod(0o600)
        load_tsig(tsig_file)  # fail here, not in named, if the format ever changes
    return ProvisionedKeys(d, fqdn, tuple(made), tsig_file, tsig_name)
