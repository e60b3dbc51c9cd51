"""The lab's images: a Debian base made with debootstrap, and one image per role built from
``images/<role>/Dockerfile`` on top of it, each tagged with the content hash of its inputs.

A role image is rebuilt only when its inputs change: the Dockerfile and the other files of its
context (for the mobile node and the correspondent, the ``testbed`` package itself and its
Python requirements), and the image id of the base it is built on. Images are shared by every
lab and labelled ``testbed.role`` and ``testbed.hash``; images with the testbed package also
carry ``testbed.python`` (the interpreter that runs it inside the image), ``testbed.pythonpath``
(the directory holding the package) and ``testbed.uml_init`` (``images/uml-init.sh``, the init
of a User-Mode Linux node whose guest runs over the image's root). Their Python
requirements are wheels made on the host by the host's pip (its index, proxy and certificates
apply; the image build needs no route to an index) and installed offline in the image, whose
Python must then be the host's version (Debian bookworm's 3.11 on both sides by default).

The base comes from ``debootstrap --variant=minbase`` and ``docker import``, as no registry
is reachable here; a user may name another base (``images: {base: debian:bookworm}`` in a
topology, ``testbed images build --base``), which must then be in the engine already. Builds
run with the host's network (``network_mode: host``): the lab's engine has no bridge, and
without a network ``apt-get update`` reports its failures but exits 0, so every Dockerfile
runs it with ``--error-on=any``.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed import dependencies
from testbed.errors import ConfigError, MissingDependency, TestbedError
from testbed.model.topology import Role
from testbed.progress import Progress, quiet

REPO = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO / "images"
PACKAGE_DIR = REPO / "testbed"
STORE = Path("/var/lib/testbed")  # build logs and debootstrap's scratch dir (same disk as the cache)
REPOSITORY = "testbed"
IMAGE_PYTHON = "/opt/testbed/venv/bin/python"  # where images/mn and images/cn install the package
IMAGE_PYTHONPATH = "/opt/testbed/src"  # the package's source in those images
IMAGE_UML_INIT = "/opt/testbed/uml-init.sh"  # images/uml-init.sh in those images
UML_INIT = IMAGES_DIR / "uml-init.sh"
DEBOOTSTRAP_TIMEOUT = 900.0
WHEELS_TIMEOUT = 600.0

# role -> directory under images/, and whether its image carries the testbed package
ROLE_DIRS: dict[Role, str] = {
    Role.DNS: "dns",
    Role.ACCESS_ROUTER: "ar",
    Role.MOBILE: "mn",
    Role.HOST: "cn",
    Role.ROUTER: "router",
}
WITH_PACKAGE = frozenset({Role.MOBILE, Role.HOST})
# images/bare-host: the bare host ``testbed deploy`` configures (every role's packages, sshd, the
# package's requirements; not the package). Its UML node tools (init, guest agent, supervisor:
# standard library only) sit in MACHINE_DIR, apart from what the roles install.
BARE_HOST = "bare-host"  # not a Role value: Role is a str enum, and "host" is one
MACHINE_DIR = "/opt/testbed-machine"
MACHINE_FILES = ("__init__.py", "runtimes/__init__.py", "runtimes/guest_agent.py",
                 "runtimes/uml_relay.py", "runtimes/ifflags.py")


class ImageError(TestbedError):
    """An image could not be built or found; the message names the fix."""


@dataclass(frozen=True)
class BaseRecipe:
    """What the default base image is made from (its tag is the digest of these fields)."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    # ip/ping/ps in every node; ca-certificates for pip's HTTPS in the package images
    include: tuple[str, ...] = ("iproute2", "iputils-ping", "procps", "ca-certificates")
    revision: int = 1  # bump when the recipe's steps change

    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.suite, self.mirror, list(self.include),
                                          self.revision]).encode()).hexdigest()

    @property
    def ref(self) -> str:
        return f"{REPOSITORY}/base:{self.digest()[:12]}"


@dataclass(frozen=True)
class RoleImage:
    role: Role | str  # a lab role, or BARE_HOST
    ref: str  # repository:tag, tag = first 12 hex digits of ``digest``
    digest: str
    python: str = ""  # interpreter of the testbed package inside the image, if it has one

    def labels(self) -> dict[str, str]:
        """The image's labels: role and content hash; where the package is, if it has it."""
        role = self.role.value if isinstance(self.role, Role) else self.role
        out = {"testbed.role": role, "testbed.hash": self.digest}
        if self.role == BARE_HOST:
            out |= {"testbed.python": "/usr/bin/python3", "testbed.pythonpath": MACHINE_DIR,
                    "testbed.uml_init": f"{MACHINE_DIR}/uml-init.sh"}
        elif self.python:
            out |= {"testbed.python": self.python, "testbed.pythonpath": IMAGE_PYTHONPATH,
                    "testbed.uml_init": IMAGE_UML_INIT}
        return out


def image_dir(role: Role | str) -> str:
    """The directory under images/ of a role's image, or of the bare host."""
    return ROLE_DIRS[role] if isinstance(role, Role) else role


# ------------------------------------------------------------------------------- inputs
def requirements(lock: Path = dependencies.RUNTIME_LOCK) -> str:
    """The package's runtime requirements: the runtime lock (every dependency pinned, with the
    hashes pip checks, no host-only ones)."""
    return lock.read_text()


def wheels(reqs: str, store: Path = STORE / "wheels") -> Path:
    """A directory of wheels for ``reqs`` made by the host's pip, cached by the requirements'
    hash (made once, then reused by every build)."""
    d = store / hashlib.sha256(reqs.encode()).hexdigest()[:12]
    if (d / ".complete").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    (d / "requirements.txt").write_text(reqs)
    argv = [sys.executable, "-m", "pip", "wheel", "-q", "--require-hashes", "--wheel-dir", str(d),
            "-r", str(d / "requirements.txt")]
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=WHEELS_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ImageError(f"pip wheel did not finish within {WHEELS_TIMEOUT:g} s") from None
    if cp.returncode != 0:
        tail = " | ".join((cp.stdout + cp.stderr).strip().splitlines()[-3:])
        raise ImageError(f"making wheels of the image's Python requirements failed: {tail}")
    (d / ".complete").touch()
    return d


def package_files(root: Path | None = None) -> list[Path]:
    """The package's source and data files (no bytecode), sorted for a stable hash."""
    root = root or PACKAGE_DIR
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix not in (".pyc", ".pyo"))


def context_files(role: Role | str, images_dir: Path = IMAGES_DIR) -> dict[str, bytes]:
    """Archive name -> content of every file in a role image's (or the bare host's) build
    context."""
    d = images_dir / image_dir(role)
    if not (d / "Dockerfile").is_file():
        raise ImageError(f"{d / 'Dockerfile'} is missing (the {image_dir(role)} image's recipe)")
    files = {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}
    if role in WITH_PACKAGE or role == BARE_HOST:
        reqs = requirements()
        files["requirements.txt"] = reqs.encode()
        files["uml-init.sh"] = UML_INIT.read_bytes()
        for p in sorted(wheels(reqs).glob("*.whl")):
            files[f"wheels/{p.name}"] = p.read_bytes()
    if role in WITH_PACKAGE:
        for p in package_files(PACKAGE_DIR):
            files[f"src/testbed/{p.relative_to(PACKAGE_DIR)}"] = p.read_bytes()
    elif role == BARE_HOST:
        for name in MACHINE_FILES:
            files[f"machine/testbed/{name}"] = (PACKAGE_DIR / name).read_bytes()
    return files


def digest_of(files: dict[str, bytes], base_id: str) -> str:
    """Content hash of a build: the base image id and each file's name and bytes."""
    h = hashlib.sha256(base_id.encode())
    for name in sorted(files):
        h.update(b"\0" + name.encode() + b"\0")
        h.update(hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def context_tar(files: dict[str, bytes]) -> io.BytesIO:
    """An uncompressed tar of the build context, with fixed metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[name]))
    buf.seek(0)
    return buf


def role_image(role: Role | str, base_id: str, images_dir: Path = IMAGES_DIR) -> RoleImage:
    d = digest_of(context_files(role, images_dir), base_id)
    return RoleImage(role, f"{REPOSITORY}/{image_dir(role)}:{d[:12]}", d,
                     IMAGE_PYTHON if role in WITH_PACKAGE else "")


# ------------------------------------------------------------------------------- engine side
def image_id(client: Any, ref: str) -> str | None:
    import docker.errors

    try:
        return str(client.images.get(ref).id)
    except docker.errors.ImageNotFound:
        return None


def base_image(client: Any, base: str | None, progress: Progress = quiet, force: bool = False) -> str:
    """The base image's id: the default one (made if missing), or a user's, which must exist."""
    if base:
        found = image_id(client, base)
        if found is None:
            raise ConfigError("images", "base", f"image {base!r} is not in the Docker engine",
                              "load it first (`docker load`/`docker pull`), or drop images.base "
                              "to use testbed's debootstrap base")
        return found
    recipe = BaseRecipe()
    found = None if force else image_id(client, recipe.ref)
    if found is None:
        progress(f"making the base image {recipe.ref} (debootstrap, about a minute)")
        build_base(client, recipe)
        found = image_id(client, recipe.ref)
        if found is None:
            raise ImageError(f"docker import of {recipe.ref} gave no image")
    return found


def build_base(client: Any, recipe: BaseRecipe, ref: str | None = None) -> None:
    """debootstrap into a scratch dir, slim it, ``docker import`` it."""
    if shutil.which("debootstrap", path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
        raise MissingDependency("debootstrap", "debootstrap")
    STORE.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="base-", dir=STORE))
    root = scratch / "root"
    try:
        argv = ["debootstrap", "--variant=minbase", f"--include={','.join(recipe.include)}",
                recipe.suite, str(root), recipe.mirror]
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ImageError(f"debootstrap did not finish within {DEBOOTSTRAP_TIMEOUT:g} s") from None
        if cp.returncode != 0:
            tail = " | ".join((cp.stdout + cp.stderr).strip().splitlines()[-3:])
            raise ImageError(f"debootstrap {recipe.suite} failed: {tail}")
        for d in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                  "usr/share/locale", "usr/share/info"):
            for p in (root / d).glob("*"):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif p.name != "lock" and p.name != "partial":
                    p.unlink()
        # package scripts must not start daemons inside an image build or a lab node
        rc = root / "usr/sbin/policy-rc.d"
        rc.write_text("#!/bin/sh\nexit 101\n")
        rc.chmod(0o755)
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            repo, tag = (ref or recipe.ref).split(":")
            client.api.import_image_from_stream(
                tar.stdout, repository=repo, tag=tag,
                changes=["LABEL testbed.role=base", f"LABEL testbed.hash={recipe.digest()}",
                         "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                         'CMD ["/bin/bash"]'])
        finally:
            tar.stdout.close()
            tar.wait(timeout=60)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def ensure(client: Any, roles: Iterable[Role | str], base: str | None = None, progress: Progress = quiet,
           force: bool = False, build_client: Any = None) -> dict[Role, RoleImage]:
    """The image of each role, built first where the engine lacks its current tag (or all of
    them with ``force``, without the engine's layer cache). ``build_client``: a client with a
    build-length timeout."""
    base_id = base_image(client, base, progress, force)
    out: dict[Role, RoleImage] = {}
    for role in dict.fromkeys(roles):
        img = role_image(role, base_id)
        if force or image_id(client, img.ref) is None:
            progress(f"building image {img.ref}")
            build(build_client or client, img, base_id, nocache=force)
        out[role] = img
    return out


def build(client: Any, img: RoleImage, base_id: str, nocache: bool = False) -> None:
    files = context_files(img.role)
    log = STORE / "build-logs" / f"{image_dir(img.role)}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    tail: list[str] = []
    error = ""
    with open(log, "w") as out:
        stream = client.api.build(fileobj=context_tar(files), custom_context=True, tag=img.ref,
                                  buildargs={"BASE": base_id}, network_mode="host",
                                  labels=img.labels(), rm=True, forcerm=True, decode=True, pull=False,
                                  nocache=nocache)
        for chunk in stream:
            text = chunk.get("stream") or chunk.get("status") or ""
            if text:
                out.write(text)
                tail = (tail + text.strip().splitlines())[-4:]
            if "error" in chunk:
                error = str(chunk.get("error", "")).strip()
                out.write(f"ERROR: {error}\n")
    if error:
        raise ImageError(f"building {img.ref} failed: {error} (log {log}: {' | '.join(tail)})")


def prune(client: Any, keep: Iterable[str]) -> list[str]:
    """Remove testbed role images whose tag is not in ``keep`` (older inputs); returns them."""
    import docker.errors

    keep = set(keep)
    gone = []
    for im in client.images.list(filters={"label": "testbed.hash"}):
        for tag in im.tags:
            if tag.startswith(f"{REPOSITORY}/") and tag not in keep and not tag.startswith(
                    f"{REPOSITORY}/base:"):
                try:
                    client.images.remove(tag, noprune=False)
                    gone.append(tag)
                except docker.errors.APIError:
                    pass  # in use by a container of a running lab
    return gone
