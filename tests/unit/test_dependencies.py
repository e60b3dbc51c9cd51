"""The lock files pin what pyproject.toml asks for, with hashes; a change to either that the
other does not follow fails here, naming `make lock`."""

from __future__ import annotations

import shutil

from testbed import dependencies as deps


def copies(tmp_path):
    for p in (deps.PYPROJECT, deps.DEV_LOCK, deps.RUNTIME_LOCK):
        shutil.copy(p, tmp_path / p.name)
    return tmp_path / "pyproject.toml", tmp_path / "dev.txt", tmp_path / "runtime.txt"


def test_the_locks_agree_with_pyproject():
    assert deps.problems() == []


def test_every_pin_has_a_hash_and_the_runtime_lock_has_no_host_only_package():
    dev, runtime = deps.Lock.read(deps.DEV_LOCK), deps.Lock.read(deps.RUNTIME_LOCK)
    assert dev.unhashed == () and runtime.unhashed == ()
    assert "mininet" in dev.pins and "mininet" not in runtime.pins
    assert {"pip", "setuptools", "cryptography", "dnspython"} <= set(dev.pins)
    assert all(dev.pins[n] == v for n, v in runtime.pins.items())


def test_a_dependency_added_to_pyproject_but_not_locked_is_found(tmp_path):
    pyproject, dev, runtime = copies(tmp_path)
    added = pyproject.read_text().replace('"docker>=7.1",', '"docker>=7.1",\n  "not-locked-anywhere==1.0",')
    pyproject.write_text(added)
    found = deps.problems(pyproject, dev, runtime)
    assert any("not-locked-anywhere" in p and "not pinned" in p for p in found)
    assert any("made from other inputs" in p for p in found)
    assert all("make lock" in p for p in found)


def test_a_floor_the_pin_no_longer_meets_is_found(tmp_path):
    pyproject, dev, runtime = copies(tmp_path)
    pin = deps.Lock.read(dev).pins["dnspython"]
    major = int(pin.split(".")[0])
    pyproject.write_text(pyproject.read_text().replace('"dnspython>=2.6"', f'"dnspython>={major + 1}"'))
    found = deps.problems(pyproject, dev, runtime)
    assert any(f"dnspython=={pin} does not satisfy" in p for p in found)


def test_a_pin_without_hash_or_a_runtime_pin_off_the_dev_lock_is_found(tmp_path):
    pyproject, dev, runtime = copies(tmp_path)
    text = runtime.read_text()
    pin = deps.Lock.read(runtime).pins["rich"]
    runtime.write_text(text.replace(f"rich=={pin} \\", "rich==0.1 \\"))
    dev.write_text(dev.read_text() + "extra-thing==1.0\n")
    found = deps.problems(pyproject, dev, runtime)
    assert any("extra-thing pinned without a hash" in p for p in found)
    assert any(f"rich==0.1 but dev.txt pins {pin}" in p for p in found)


def test_pins_are_read_across_hash_continuations(tmp_path):
    lock = tmp_path / "x.txt"
    lock.write_text(f"{deps.DIGEST_PREFIX}abc\n# note\nFoo_Bar==1.2 \\\n    --hash=sha256:00\n"
                    "    # via x\nbaz==3 ; python_version >= '3'\n")
    got = deps.Lock.read(lock)
    assert got.digest == "abc" and got.pins == {"foo-bar": "1.2", "baz": "3"} and got.unhashed == ("baz",)
