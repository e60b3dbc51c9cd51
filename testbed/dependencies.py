"""The package's Python dependencies: what ``pyproject.toml`` asks for, and the lock files that
pin every one of them, direct and transitive, with the hashes of their files.

``requirements/dev.txt`` pins the controller's venv (the package with its ``dev`` extra, which
holds ``deploy``, plus pip and the build backend, since ``make setup`` builds the package without
isolation). ``requirements/runtime.txt`` pins what a node image and a deployed host install: the
package's own dependencies without the host-only ones, at the versions of ``dev.txt``. Both are
installed with ``pip --require-hashes``; ``make lock`` (``python -m testbed.dependencies``) makes
them with uv, keeping every pin that still satisfies ``pyproject.toml`` (``UPGRADE=1``: the
newest releases instead). Each lock's first line carries the digest of the inputs it was made
from, so a change to ``pyproject.toml`` that was not locked is found (``problems``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
LOCK_DIR = REPO / "requirements"
DEV_LOCK = LOCK_DIR / "dev.txt"
RUNTIME_LOCK = LOCK_DIR / "runtime.txt"
# Python requirements the images and deployed hosts leave out: mininet builds the host's
# namespaces only
HOST_ONLY = ("mininet",)
# installed into the controller's venv beside the package: the installer itself, so that a
# given lock always installs with the same pip
TOOLING = ("pip",)
DIGEST_PREFIX = "# inputs: sha256:"
UV_TIMEOUT = 300.0

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)")


class LockError(Exception):
    """The lock could not be made; the message names the fix."""


def canonical(name: str) -> str:
    """A distribution name as the index compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _project(pyproject: Path) -> dict:
    return tomllib.loads(pyproject.read_text())


def runtime_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The package's own requirements without the host-only ones."""
    deps = _project(pyproject)["project"]["dependencies"]
    return [d for d in deps if canonical(_name_of(d)) not in HOST_ONLY]


def _name_of(requirement: str) -> str:
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    return m.group(0) if m else requirement


def build_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The build backend (``[build-system] requires``) and the installer."""
    return [*_project(pyproject)["build-system"]["requires"], *TOOLING]


def input_digest(pyproject: Path = PYPROJECT) -> str:
    """Digest of everything in ``pyproject.toml`` a lock depends on."""
    data = _project(pyproject)
    inputs = {"requires-python": data["project"].get("requires-python"),
              "dependencies": data["project"]["dependencies"],
              "optional-dependencies": data["project"].get("optional-dependencies", {}),
              "build": build_requirements(pyproject), "host-only": list(HOST_ONLY)}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Lock:
    path: Path
    digest: str  # of the inputs it was made from ('' if the line is missing)
    pins: dict[str, str]  # canonical name -> version
    unhashed: tuple[str, ...]  # pins without a --hash

    @classmethod
    def read(cls, path: Path) -> Lock:
        text = path.read_text()
        digest = ""
        pins: dict[str, str] = {}
        unhashed: list[str] = []
        # a requirement and its hashes form one logical line (backslash continuations)
        for entry in text.replace("\\\n", " ").splitlines():
            entry = entry.strip()
            if entry.startswith(DIGEST_PREFIX):
                digest = entry[len(DIGEST_PREFIX):].split()[0]
            m = _PIN.match(entry)
            if m:
                pins[canonical(m.group(1))] = m.group(2)
                if "--hash=" not in entry:
                    unhashed.append(m.group(1))
        return cls(path, digest, pins, tuple(unhashed))

    def text(self) -> str:
        """The pins alone, one ``name==version`` a line (for a constraints file)."""
        return "".join(f"{n}=={v}\n" for n, v in sorted(self.pins.items()))


def problems(pyproject: Path = PYPROJECT, dev: Path = DEV_LOCK, runtime: Path = RUNTIME_LOCK) -> list[str]:
    """Where the locks disagree with ``pyproject.toml`` or with each other; [] when they agree."""
    from packaging.requirements import Requirement

    out: list[str] = []
    try:
        locks = {p: Lock.read(p) for p in (dev, runtime)}
    except OSError as e:
        return [f"{e.filename}: cannot read the lock ({e.strerror}): run `make lock`"]
    want = input_digest(pyproject)
    for p, lock in locks.items():
        if lock.digest != want:
            out.append(f"{p.name}: made from other inputs than {pyproject.name}'s (its dependencies, "
                       "extras or build requirements changed): run `make lock`")
        if lock.unhashed:
            out.append(f"{p.name}: {', '.join(lock.unhashed)} pinned without a hash: run `make lock`")
    data = _project(pyproject)
    extras = data["project"].get("optional-dependencies", {})
    wanted = [*data["project"]["dependencies"], *build_requirements(pyproject),
              *(r for reqs in extras.values() for r in reqs)]
    name = canonical(data["project"]["name"])
    for r in map(Requirement, wanted):
        if canonical(r.name) == name or (r.marker is not None and not r.marker.evaluate()):
            continue
        pinned = locks[dev].pins.get(canonical(r.name))
        if pinned is None:
            out.append(f"{dev.name}: {r.name} is not pinned ({pyproject.name} asks for {r}): run `make lock`")
        elif not r.specifier.contains(pinned, prereleases=True):
            out.append(f"{dev.name}: {r.name}=={pinned} does not satisfy {pyproject.name}'s {r}: "
                       "run `make lock`")
    for n, v in locks[runtime].pins.items():
        if n in HOST_ONLY:
            out.append(f"{runtime.name}: {n} is host-only and belongs in {dev.name} alone: run `make lock`")
        elif (at := locks[dev].pins.get(n)) != v:
            out.append(f"{runtime.name}: {n}=={v} but {dev.name} pins {at}: run `make lock`")
    return out


# ------------------------------------------------------------------------------- making locks
def _uv() -> str:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise LockError("uv is not installed (it is in the dev extra): run `make setup`")
    return uv


def _compile(uv: str, sources: list[str], out: Path, extra: list[str], upgrade: bool) -> None:
    argv = [uv, "pip", "compile", *sources, "--generate-hashes", "--no-header", "--quiet",
            "--python", sys.executable, "-o", str(out.relative_to(REPO)), *extra]
    if upgrade:
        argv.append("--upgrade")
    try:
        cp = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=UV_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise LockError(f"uv pip compile did not finish within {UV_TIMEOUT:g} s (no index?)") from None
    if cp.returncode != 0:
        tail = " | ".join((cp.stdout + cp.stderr).strip().splitlines()[-3:])
        raise LockError(f"uv pip compile for {out.name} failed: {tail}")


def _header(what: str, digest: str) -> str:
    return (f"{DIGEST_PREFIX}{digest}\n"
            f"# {what}\n"
            "# Made by `make lock` (python -m testbed.dependencies) from pyproject.toml: do not edit.\n"
            "# Installed with `pip install --require-hashes -r`.\n")


def _write_with_header(path: Path, header: str) -> None:
    body = path.read_text()
    while body.startswith("#"):  # the previous header (uv keeps a file's pins, not its comments)
        body = body.split("\n", 1)[1] if "\n" in body else ""
    path.write_text(header + body)


def make(upgrade: bool = False) -> list[Path]:
    """Write both locks: dev.txt from pyproject.toml's dev extra and build requirements,
    runtime.txt from its own dependencies (no host-only ones) at dev.txt's versions."""
    uv = _uv()
    digest = input_digest()
    LOCK_DIR.mkdir(exist_ok=True)
    build_in = LOCK_DIR / "build.in"  # committed beside the locks, so uv's notes name it
    build_in.write_text("# [build-system] requires and the installer (made by `make lock`)\n"
                        + "".join(f"{r}\n" for r in build_requirements()))
    runtime_in = LOCK_DIR / "runtime.in"
    runtime_in.write_text("# pyproject.toml's dependencies without the host-only ones "
                          "(made by `make lock`)\n" + "".join(f"{r}\n" for r in runtime_requirements()))
    _compile(uv, ["pyproject.toml", str(build_in.relative_to(REPO))], DEV_LOCK,
             ["--extra", "dev"], upgrade)
    _write_with_header(DEV_LOCK, _header("The controller's venv: the package, its dev and deploy "
                                         "extras, the build backend and pip.", digest))
    _compile(uv, [str(runtime_in.relative_to(REPO))], RUNTIME_LOCK,
             ["-c", str(DEV_LOCK.relative_to(REPO))], False)
    _write_with_header(RUNTIME_LOCK, _header("Node images and deployed hosts: the package's own "
                                             "dependencies, at dev.txt's versions.", digest))
    return [DEV_LOCK, RUNTIME_LOCK]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.dependencies", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("lock", "check"), help="lock: write the lock files; "
                    "check: say where they disagree with pyproject.toml")
    ap.add_argument("--upgrade", action="store_true", help="lock: the newest allowed releases, not the "
                    "current pins")
    a = ap.parse_args(argv)
    if a.action == "check":
        found = problems()
        for p in found:
            print(p, file=sys.stderr)
        return 1 if found else 0
    try:
        for p in make(a.upgrade):
            print(f"{p.relative_to(REPO)}: {len(Lock.read(p).pins)} pins")
    except LockError as e:
        print(f"make lock: {e}", file=sys.stderr)
        return 1
    found = problems()
    for p in found:
        print(p, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
