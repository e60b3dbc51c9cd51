"""The kernels of a matrix, named as a node's ``kernel:`` takes them, resolved before any lab.

``uml`` is Debian's User-Mode-Linux build; a Debian series or release (``6.1``, ``6.12``,
``6.1.0-56``) is a cached distribution kernel in QEMU; a path is a user's build: an ``ARCH=um``
binary boots as a UML node, a bzImage or x86 vmlinux in QEMU (``uml:PATH`` / ``qemu:PATH``
say which when the file cannot tell). ``usrsctp`` is not a kernel but a second SCTP
implementation (libusrsctp2), for the correspondent's side only.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from testbed.errors import ConfigError
from testbed.runtimes import kernels as qemu_kernels
from testbed.runtimes import uml_kernels

_KERNEL_HALF = 0xFFFF800000000000  # x86-64 kernel virtual addresses start here
_SERIES = re.compile(r"^\d+\.\d+(\.\d+.*)?$")


@dataclass(frozen=True)
class KernelChoice:
    """One row and column of the matrix."""

    label: str  # as given on the command line
    stack: str  # "uml" | "qemu" | "usrsctp" (a correspondent only)
    kernel: str | None  # the node's ``kernel:`` value
    release: str  # `uname -r` of the resolved build

    @property
    def slug(self) -> str:
        """A file-name-safe name: the label, or for a path its file name and a short hash."""
        if "/" not in self.label:
            return re.sub(r"[^A-Za-z0-9.+-]", "_", self.label)
        digest = hashlib.sha1(self.label.encode()).hexdigest()[:6]
        return f"{re.sub(r'[^A-Za-z0-9.+-]', '_', Path(self.label).name)}-{digest}"

    @property
    def mobile(self) -> bool:
        """Can it run the mobile node? (usrsctp cannot add an address after its start.)"""
        return self.stack != "usrsctp"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KernelChoice:
        return cls(**d)


def image_kind(path: Path) -> str:
    """"uml" for an ARCH=um executable, "qemu" for a bzImage or an x86 vmlinux.

    Read by hand (two header fields): a bzImage carries "HdrS" at 0x202 (the x86 boot
    protocol); a vmlinux is an ELF whose first loadable segment sits in the kernel half of
    the address space, where no user-space program (UML included) is linked."""
    with open(path, "rb") as f:
        head = f.read(0x206)
        if head[0x202:0x206] == b"HdrS":
            return "qemu"
        if head[:4] != b"\x7fELF" or head[4] != 2:
            raise ConfigError("--kernels", str(path), "neither a 64-bit ELF nor a bzImage",
                              "give an ARCH=um linux binary, a bzImage or a vmlinux")
        endian = "<" if head[5] == 1 else ">"
        phoff, = struct.unpack_from(endian + "Q", head, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", head, 0x36)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p_type, _flags, _off, vaddr = struct.unpack(endian + "IIQQ", f.read(24))
            if p_type == 1:  # PT_LOAD
                return "qemu" if vaddr >= _KERNEL_HALF else "uml"
    return "uml"


def usrsctp_choice() -> KernelChoice:
    """usrsctp as a correspondent: the library must load, and the host kernel must have no SCTP
    (usrsctp speaks SCTP over raw IP in a namespace of that kernel)."""
    import ctypes
    import subprocess

    from testbed.runtimes.kernel_nodes import host_has_sctp
    from testbed.sctp.usrsctp import LIBRARY, PACKAGE

    try:
        ctypes.CDLL(LIBRARY)
    except OSError as e:
        raise ConfigError("--kernels", "usrsctp", f"{LIBRARY} not found",
                          f"install the Debian package '{PACKAGE}' (make setup)") from e
    if host_has_sctp():
        raise ConfigError("--kernels", "usrsctp", "this host's kernel has SCTP, which would answer "
                          "usrsctp's packets itself", "leave usrsctp out here")
    cp = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", PACKAGE], capture_output=True, text=True)
    return KernelChoice("usrsctp", "usrsctp", None, f"libusrsctp {cp.stdout.strip() or '?'}")


def parse(spec: str) -> KernelChoice:
    """One ``--kernels`` entry, resolved now so a bad one fails before anything is built."""
    label = spec.strip()
    if not label:
        raise ConfigError("--kernels", "-", "empty kernel name", "e.g. --kernels uml,6.1,6.12")
    if label == "usrsctp":
        return usrsctp_choice()
    stack, _, rest = label.partition(":")
    if stack in ("uml", "qemu") and rest:
        kind, target = stack, rest
    elif label in uml_kernels.DEFAULT_SPECS:
        kind, target = "uml", None
    elif "/" in label or Path(label).exists():
        p = Path(label).expanduser()
        if not p.is_file():
            raise ConfigError("--kernels", label, "no such file",
                              "give uml, a Debian series (6.1, 6.12) or the path of a kernel build")
        kind, target = image_kind(p), str(p.resolve())
    elif _SERIES.match(label):
        kind, target = "qemu", label
    else:
        raise ConfigError("--kernels", label, "not a kernel name",
                          "give uml, a Debian series or release (6.1, 6.12, 6.1.0-56) or a path")
    if kind == "uml":
        release = uml_kernels.resolve(target or "uml").release
    else:
        release = qemu_kernels.resolve(target).release
    return KernelChoice(label, kind, target, release)


def parse_list(text: str) -> list[KernelChoice]:
    """``uml,6.1,6.12`` as choices, in the order given, each once."""
    out: list[KernelChoice] = []
    for part in text.split(","):
        k = parse(part)
        if k.label in {c.label for c in out}:
            continue
        if k.slug in {c.slug for c in out}:
            raise ConfigError("--kernels", k.label, "two kernels with the same name",
                              "give each build a distinct path or name")
        out.append(k)
    return out
