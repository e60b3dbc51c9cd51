"""Building the VMs' tiny initramfs: busybox-static, ``images/init.sh`` and the boot modules.

Everything else the guest runs comes from the host's root over 9p, so the image stays ~5 MB and
is rebuilt only when the kernel, the module list or the init script change (content hash).
The cpio writer is hand-rolled (newc is ~20 lines) so no staging tree or ``cpio`` binary is
needed and a device node (/dev/console) can be added without mknod.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import ConfigError, MissingDependency
from testbed.runtimes.kernels import KernelFiles, cache_dir

INIT_SCRIPT = Path(__file__).resolve().parents[2] / "images" / "init.sh"
BUSYBOX = Path("/bin/busybox")

# Loaded in this order (each after its modules.dep closure). crc32c comes first because libcrc32c
# asks the crypto API for "crc32c" and the initramfs has no modprobe to load it on demand.
BOOT_MODULES: tuple[str, ...] = (
    "virtio_pci",
    "virtio_net",
    "virtio_console",
    "9pnet_virtio",
    "9p",
    "crc32c-intel",
    "crc32c_generic",
    "libcrc32c",
    "udp_tunnel",
    "ip6_udp_tunnel",
    "sctp",
)


@dataclass(frozen=True)
class CpioEntry:
    """One newc record: a directory, a file, a symlink or a character device."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def cpio_newc(entries: Iterable[CpioEntry]) -> bytes:
    """Serialise entries as a newc ("070701") archive with its TRAILER!!! record."""
    out = bytearray()
    ino = 1
    for e in [*entries, CpioEntry("TRAILER!!!", 0)]:
        name = e.name.encode() + b"\0"
        fields = (
            ino,
            e.mode,
            0,
            0,
            1 if e.mode else 0,
            0,
            len(e.data),
            0,
            0,
            e.rdev[0],
            e.rdev[1],
            len(name),
            0,
        )
        out += b"070701" + b"".join(b"%08x" % f for f in fields) + name
        out += b"\0" * (-len(out) % 4)
        out += e.data
        out += b"\0" * (-len(out) % 4)
        ino += 1
    return bytes(out)


def _modname(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep → {module name: (relative path, [paths it depends on])}."""
    table: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, deps = line.split(":", 1)
        table[_modname(path)] = (path, deps.split())
    return table


def module_order(
    table: dict[str, tuple[str, list[str]]], wanted: Sequence[str], builtin: Iterable[str] = ()
) -> list[str]:
    """Relative paths to insmod, dependencies first, each once; built-in ones are skipped
    (6.12 builds virtio_pci in, 6.1 as a module); unknown names raise."""
    built = {_modname(b) for b in builtin}
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen:
            return
        if name not in table:
            raise ConfigError("kernel modules", name, "not in modules.dep", "is it built as a module?")
        if name in chain:
            raise ConfigError("kernel modules", name, "dependency cycle in modules.dep")
        path, deps = table[name]
        for d in deps:
            visit(_modname(d), (*chain, name))
        seen.add(name)
        order.append(path)

    for w in wanted:
        if _modname(w) not in built:
            visit(_modname(w), ())
    return order


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        raise ConfigError("kernel modules", str(path), "zstd-compressed", "unpack the modules first")
    return data


def build(kernel: KernelFiles, extra_modules: Sequence[str] = (), out_dir: Path | None = None) -> Path:
    """Return the path of an initramfs for ``kernel``, building it if the cached one is stale."""
    if not BUSYBOX.exists():
        raise MissingDependency(str(BUSYBOX), "busybox-static")
    table = parse_modules_dep((kernel.modules_dir / "modules.dep").read_text())
    # crc32c-intel may be absent in a user's build: leave out optional accelerators it lacks
    wanted = [m for m in (*BOOT_MODULES, *extra_modules) if m != "crc32c-intel" or _modname(m) in table]
    builtin_file = kernel.modules_dir / "modules.builtin"
    builtin = builtin_file.read_text().split() if builtin_file.exists() else []
    paths = module_order(table, wanted, builtin)
    init = INIT_SCRIPT.read_bytes()
    key = hashlib.sha256()
    for part in (kernel.release.encode(), init, BUSYBOX.read_bytes()[:4096], "\n".join(paths).encode()):
        key.update(part)
    out_dir = out_dir or cache_dir() / "initramfs"
    out = out_dir / f"{kernel.release}-{key.hexdigest()[:16]}.cpio"
    if out.exists():
        return out
    entries = [
        CpioEntry("bin", 0o040755),
        CpioEntry("dev", 0o040755),
        CpioEntry("proc", 0o040755),
        CpioEntry("sys", 0o040755),
        CpioEntry("newroot", 0o040755),
        CpioEntry("modules", 0o040755),
        CpioEntry("dev/console", 0o020600, rdev=(5, 1)),
        CpioEntry("bin/busybox", 0o100755, BUSYBOX.read_bytes()),
        CpioEntry("bin/sh", 0o120777, b"busybox"),
        CpioEntry("init", 0o100755, init),
    ]
    names = []
    for rel in paths:
        name = _modname(rel) + ".ko"
        names.append(name)
        entries.append(CpioEntry(f"modules/{name}", 0o100644, _module_bytes(kernel.modules_dir / rel)))
    entries.append(CpioEntry("modules/order", 0o100644, ("\n".join(names) + "\n").encode()))
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(cpio_newc(entries))
    shutil.move(tmp, out)
    return out
