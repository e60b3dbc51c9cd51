"""Key material for location updates: load, generate and write SIG(0) keys and TSIG keys.

Formats read: BIND key pairs as ``dnssec-keygen -T KEY`` writes them (``K<name>+<alg>+<tag>.key``
with the KEY RR, ``.private`` in "Private-key-format: v1.3"), PKCS#8 PEM private keys (optionally
encrypted; §4 of the spec: the MN unlocks its key once per run, so the passphrase is asked for
at load time only and the decrypted key stays in memory), and TSIG ``key`` clauses as
``tsig-keygen`` writes them. The small text formats are parsed here because neither dnspython
nor cryptography reads BIND's private-key format.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dns.dnssecalgs
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from dns.dnssecalgs.base import GenericPrivateKey
from dns.dnssectypes import Algorithm

from testbed.errors import ConfigError
from testbed.mobility.location.sig0 import (
    ECDSAP256SHA256,
    ED25519,
    Sig0Key,
    algorithm_from_text,
)

Passphrase = bytes | str | Callable[[], bytes | str] | None
"""A passphrase, or a callable asked for it only when the PEM turns out to be encrypted."""


def generate(name: str | dns.name.Name, algorithm: str | int = "ECDSAP256SHA256") -> Sig0Key:
    """A fresh key pair made in-process (no dnssec-keygen needed)."""
    alg = algorithm_from_text(algorithm)
    cls = dns.dnssecalgs.get_algorithm_cls(alg)
    return Sig0Key(_name(name), cls.generate())  # type: ignore[attr-defined]


def load_key(
    path: str | Path, name: str | dns.name.Name | None = None, passphrase: Passphrase = None
) -> Sig0Key:
    """Load a SIG(0) key from a BIND pair (either file of it) or a PEM file (``name`` needed)."""
    p = Path(path)
    if p.suffix in (".key", ".private"):
        return load_bind_keypair(p)
    text = _read(p)
    if "-----BEGIN" in text:
        if name is None:
            raise ConfigError(str(p), "name", "a PEM key carries no owner name", "pass --name")
        return load_pem(p, name, passphrase)
    raise ConfigError(str(p), "format", "neither a BIND K*.key/.private pair nor PEM")


def load_bind_keypair(path: str | Path) -> Sig0Key:
    """Load ``K<name>+<alg>+<tag>.key`` and its ``.private`` (give either path)."""
    p = Path(path)
    key_path, private_path = p.with_suffix(".key"), p.with_suffix(".private")
    rr = _parse_key_file(key_path)
    fields = _parse_private_file(private_path)
    alg = algorithm_from_text(fields.get("Algorithm", "").split()[0] or "?")
    if alg != rr[1].algorithm:
        raise ConfigError(
            str(private_path),
            "Algorithm",
            f"{alg.name} but the .key says {Algorithm(rr[1].algorithm).name}",
            "regenerate the pair",
        )
    try:
        raw = base64.b64decode(fields["PrivateKey"], validate=True)
    except (KeyError, ValueError) as e:
        raise ConfigError(str(private_path), "PrivateKey", "missing or not base64") from e
    key = Sig0Key(
        rr[0], _private_from_raw(alg, raw, private_path), flags=rr[1].flags, protocol=rr[1].protocol
    )
    if key.public.rdata.key != rr[1].key:
        raise ConfigError(
            str(key_path),
            "KEY",
            "public key does not match the .private file",
            "use the two files dnssec-keygen wrote together",
        )
    return key


def load_pem(path: str | Path, name: str | dns.name.Name, passphrase: Passphrase = None) -> Sig0Key:
    """Load a PKCS#8 PEM private key (P-256 or Ed25519), decrypting it if needed."""
    p = Path(path)
    data = _read(p).encode()
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted: only now ask for the passphrase
        secret = passphrase() if callable(passphrase) else passphrase
        if secret is None:
            raise ConfigError(
                str(p),
                "passphrase",
                "the key is encrypted",
                "give a passphrase (--passphrase-env VAR)",
            ) from None
        try:
            private = serialization.load_pem_private_key(
                data, password=secret.encode() if isinstance(secret, str) else secret
            )
        except ValueError as e:
            raise ConfigError(str(p), "passphrase", "wrong passphrase or corrupt key") from e
    except ValueError as e:
        raise ConfigError(str(p), "PEM", f"not a private key: {e}") from e
    if isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1):
        alg = ECDSAP256SHA256
    elif isinstance(private, ed25519.Ed25519PrivateKey):
        alg = ED25519
    else:
        raise ConfigError(
            str(p),
            "key type",
            f"{type(private).__name__} unsupported",
            "use a P-256 or Ed25519 key",
        )
    return Sig0Key(_name(name), dns.dnssecalgs.get_algorithm_cls(alg)(private))


def to_pem(key: Sig0Key, passphrase: bytes | str | None = None) -> bytes:
    """PKCS#8 PEM of the private key, encrypted when a passphrase is given."""
    secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
    return key.private.to_pem(password=secret)


@dataclass(frozen=True)
class BindKeyFiles:
    key: Path
    private: Path


def write_bind_keypair(key: Sig0Key, directory: str | Path) -> BindKeyFiles:
    """Write the pair as dnssec-keygen would name it, so nsupdate -k and BIND can use it."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    base = d / f"K{key.name.to_text()}+{int(key.algorithm):03d}+{key.key_tag:05d}"
    key_path, private_path = Path(f"{base}.key"), Path(f"{base}.private")
    key_path.write_text(f"{key.name.to_text()} IN KEY {key.public.rdata.to_text()}\n")
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            "Private-key-format: v1.3\n"
            f"Algorithm: {int(key.algorithm)} ({key.algorithm.name})\n"
            f"PrivateKey: {base64.b64encode(_private_raw(key)).decode()}\n"
        )
    return BindKeyFiles(key_path, private_path)


# --- TSIG ----------------------------------------------------------------------------------

_TSIG_RE = re.compile(
    r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{\s*algorithm\s+"?(?P<alg>[\w.-]+)"?\s*;'
    r'\s*secret\s+"(?P<secret>[A-Za-z0-9+/=]+)"\s*;\s*\}\s*;',
    re.S,
)


def load_tsig(path: str | Path) -> dns.tsig.Key:
    """Read the first ``key "NAME" { algorithm ...; secret "..."; };`` clause of a file."""
    p = Path(path)
    m = _TSIG_RE.search(_read(p))
    if not m:
        raise ConfigError(str(p), "key", "no TSIG key clause found", "write it with tsig-keygen")
    alg = m["alg"].lower().rstrip(".")
    if alg != "hmac-sha256":
        raise ConfigError(str(p), "algorithm", f"{alg} unsupported", "use tsig-keygen -a hmac-sha256")
    return dns.tsig.Key(m["name"], m["secret"], dns.tsig.HMAC_SHA256)


def tsig_clause(key: dns.tsig.Key) -> str:
    """The named.conf ``key`` clause for ``key``."""
    secret = base64.b64encode(key.secret).decode()
    return f'key "{key.name.to_text()}" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n'


def generate_tsig(name: str) -> dns.tsig.Key:
    return dns.tsig.Key(name, os.urandom(32), dns.tsig.HMAC_SHA256)


# --- helpers -------------------------------------------------------------------------------


def _name(name: str | dns.name.Name) -> dns.name.Name:
    return name if isinstance(name, dns.name.Name) else dns.name.from_text(name)


def _read(p: Path) -> str:
    try:
        return p.read_text()
    except OSError as e:
        raise ConfigError(str(p), "file", f"cannot read: {e.strerror}") from e


def _parse_key_file(p: Path) -> tuple[dns.name.Name, dns.rdata.Rdata]:
    for line in _read(p).splitlines():
        line = line.split(";", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            i = next(j for j, tok in enumerate(parts) if tok.upper() == "KEY")
            rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.KEY, " ".join(parts[i + 1 :]))
        except (StopIteration, dns.exception.DNSException) as e:
            raise ConfigError(str(p), "KEY", f"unparseable record {line!r}") from e
        return dns.name.from_text(parts[0]), rdata
    raise ConfigError(str(p), "KEY", "no KEY record in the file")


def _parse_private_file(p: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in _read(p).splitlines():
        k, sep, v = line.partition(":")
        if sep:
            fields[k.strip()] = v.strip()
    if not fields.get("Private-key-format", "").startswith("v1."):
        raise ConfigError(str(p), "Private-key-format", "not a BIND private key file")
    return fields


def _private_from_raw(alg: Algorithm, raw: bytes, where: Path) -> GenericPrivateKey:
    cls = dns.dnssecalgs.get_algorithm_cls(alg)
    if len(raw) != 32:
        raise ConfigError(str(where), "PrivateKey", f"{len(raw)} bytes, expected 32")
    if alg == ECDSAP256SHA256:
        return cls(ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1()))
    return cls(ed25519.Ed25519PrivateKey.from_private_bytes(raw))


def _private_raw(key: Sig0Key) -> bytes:
    k = key.private.key  # type: ignore[attr-defined]
    if isinstance(k, ec.EllipticCurvePrivateKey):
        return k.private_numbers().private_value.to_bytes(32, "big")
    return k.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
