"""Key files: BIND pairs (as dnssec-keygen writes them), PEM with passphrase, TSIG clauses."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.errors import ConfigError, MissingDependency
from testbed.mobility.location import keys, provision, sig0

# A pair dnssec-keygen 9.20 wrote (`-a ECDSAP256SHA256 -T KEY -n HOST mn.mobile.test`).
BIND_KEY = (
    "; This is a key for mn.mobile.test.\n"
    "mn.mobile.test. IN KEY 512 3 13 PqlXuG86W+PmNIcLAkZEuJwcKaXtd5qHfed8BJ+Hmti9bNZgjCpkNlMH "
    "4vqTXA9wPodahjgVlpZEoru42XWL1w==\n"
)
BIND_PRIVATE = (
    "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\n"
    "PrivateKey: v5yHeUUEpehMHvfK7at2uUw7wLdqB0ZYxiE4UnJs6xM=\n"
    "Created: 20261127062201\nPublish: 20261127062201\nActivate: 20261127062201\n"
)
BIND_ED_KEY = "mn.mobile.test. IN KEY 512 3 15 9aj4aCKXQ5LRJJUE3vsthohnHzzh3y/p3h5zJi84vjE=\n"
BIND_ED_PRIVATE = (
    "Private-key-format: v1.3\nAlgorithm: 15 (ED25519)\n"
    "PrivateKey: ukSi/9Wk4+0LVnLV0QZNgwm6zdgby2vxzWQ30EsKx0E=\n"
)
TSIG = (  # tsig-keygen -a hmac-sha256 tbsig-tsig.
    'key "tbsig-tsig." {\n\talgorithm hmac-sha256;\n'
    '\tsecret "/s3youKxp6NGUAeroC0zUIH3AY0n3AVRtEZrKOKENaY=";\n};\n'
)


def _pair(d: Path, base: str, key: str, private: str) -> Path:
    (d / f"{base}.key").write_text(key)
    (d / f"{base}.private").write_text(private)
    return d / f"{base}.key"


@pytest.mark.parametrize(
    ("base", "key", "private", "tag", "alg"),
    [
        ("Kmn.mobile.test.+013+50999", BIND_KEY, BIND_PRIVATE, 50999, sig0.ECDSAP256SHA256),
        ("Kmn.mobile.test.+015+50193", BIND_ED_KEY, BIND_ED_PRIVATE, 50193, sig0.ED25519),
    ],
)
def test_load_bind_pair(tmp_path: Path, base: str, key: str, private: str, tag: int, alg) -> None:
    path = _pair(tmp_path, base, key, private)
    for p in (path, path.with_suffix(".private")):
        k = keys.load_key(p)
        assert k.name.to_text() == "mn.mobile.test."
        assert k.algorithm == alg and k.key_tag == tag
        assert k.public.to_text(300).startswith("mn.mobile.test. 300 IN KEY 512 3 ")


def test_bind_pair_mismatch_is_reported(tmp_path: Path) -> None:
    path = _pair(tmp_path, "Kx", BIND_KEY, BIND_ED_PRIVATE)
    with pytest.raises(ConfigError, match="Algorithm"):
        keys.load_key(path)
    other = keys.write_bind_keypair(keys.generate("mn.mobile.test"), tmp_path / "o")
    (tmp_path / "Ky.key").write_text(BIND_KEY)
    (tmp_path / "Ky.private").write_text(other.private.read_text())
    with pytest.raises(ConfigError, match="does not match"):
        keys.load_key(tmp_path / "Ky.key")


@pytest.mark.parametrize("alg", ["ECDSAP256SHA256", "ED25519"])
def test_write_then_load_bind_pair(tmp_path: Path, alg: str) -> None:
    k = keys.generate("mn.mobile.test", alg)
    files = keys.write_bind_keypair(k, tmp_path)
    assert files.key.name == f"Kmn.mobile.test.+{int(k.algorithm):03d}+{k.key_tag:05d}.key"
    assert files.private.stat().st_mode & 0o077 == 0
    again = keys.load_key(files.private)
    assert again.public == k.public


def test_pem_passphrase_asked_only_when_encrypted(tmp_path: Path) -> None:
    k = keys.generate("mn.mobile.test", "ED25519")
    plain, locked = tmp_path / "plain.pem", tmp_path / "locked.pem"
    plain.write_bytes(keys.to_pem(k))
    locked.write_bytes(keys.to_pem(k, "s3cret"))
    asked: list[int] = []

    def ask() -> str:
        asked.append(1)
        return "s3cret"

    assert keys.load_key(plain, "mn.mobile.test", ask).public == k.public
    assert asked == []
    assert keys.load_key(locked, "mn.mobile.test", ask).public == k.public
    assert asked == [1]  # once, at load: the key then stays unlocked for the run
    with pytest.raises(ConfigError, match="wrong passphrase"):
        keys.load_key(locked, "mn.mobile.test", b"nope")
    with pytest.raises(ConfigError, match="encrypted"):
        keys.load_key(locked, "mn.mobile.test")
    with pytest.raises(ConfigError, match="owner name"):
        keys.load_key(plain)


def test_pem_ecdsa(tmp_path: Path) -> None:
    k = keys.generate("mn.mobile.test", "ECDSAP256SHA256")
    (tmp_path / "k.pem").write_bytes(keys.to_pem(k))
    assert keys.load_pem(tmp_path / "k.pem", "mn.mobile.test").key_tag == k.key_tag


def test_unreadable_or_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        keys.load_key(tmp_path / "missing.key")
    (tmp_path / "junk").write_text("hello")
    with pytest.raises(ConfigError, match="neither"):
        keys.load_key(tmp_path / "junk")


def test_tsig_round_trip(tmp_path: Path) -> None:
    (tmp_path / "t.key").write_text(TSIG)
    k = keys.load_tsig(tmp_path / "t.key")
    assert k.name.to_text() == "tbsig-tsig." and len(k.secret) == 32
    (tmp_path / "u.key").write_text(keys.tsig_clause(k))
    assert keys.load_tsig(tmp_path / "u.key") == k
    (tmp_path / "md5.key").write_text(TSIG.replace("hmac-sha256", "hmac-md5"))
    with pytest.raises(ConfigError, match="unsupported"):
        keys.load_tsig(tmp_path / "md5.key")


def test_provision_names_the_package_when_keygen_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provision.shutil, "which", lambda *a, **k: None)
    with pytest.raises(MissingDependency, match="bind9-utils"):
        provision.provision_keys(tmp_path, "mn.mobile.test")
