"""Resolving a kernel spec (a Debian release or a user's own build) to the files QEMU boots.

The lab never builds kernels: ``scripts/fetch-kernel.sh`` unpacks Debian's into the cache, or the
user points at an image plus a modules directory that has been through ``depmod``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import ConfigError

DEFAULT_CACHE = Path("/var/cache/testbed")


def cache_dir() -> Path:
    """The download cache (``TESTBED_CACHE`` overrides ``/var/cache/testbed``)."""
    return Path(os.environ.get("TESTBED_CACHE") or DEFAULT_CACHE)


@dataclass(frozen=True)
class KernelFiles:
    """What a VM boots: the image, whether it is an ELF for PVH boot, and its modules."""

    release: str  # `uname -r` of the guest, e.g. 6.1.0-56-amd64
    image: Path  # uncompressed ELF vmlinux (PVH) or bzImage
    modules_dir: Path  # .../lib/modules/<release>, with modules.dep

    @property
    def pvh(self) -> bool:
        """QEMU boots an ELF vmlinux through its PVH entry (~2 s faster under TCG than bzImage)."""
        with open(self.image, "rb") as f:
            return f.read(4) == b"\x7fELF"


def _normalise_release(spec: str) -> str:
    return spec if spec.endswith("-amd64") else f"{spec}-amd64"


def cached_releases(cache: Path | None = None) -> list[str]:
    """Releases fetched completely into the cache, oldest first (version order)."""
    root = (cache or cache_dir()) / "kernels"
    if not root.is_dir():
        return []
    rels = [p.name for p in root.iterdir() if (p / ".complete").exists()]
    return sorted(rels, key=_version_key)


def _version_key(rel: str) -> list[int | str]:
    import re

    return [int(x) if x.isdigit() else x for x in re.split(r"[.+~-]", rel)]


def resolve(
    spec: str | None = None, *, modules: Path | None = None, cache: Path | None = None
) -> KernelFiles:
    """Find the files for ``spec``.

    ``spec`` is ``None`` (``$TESTBED_KERNEL``, else the newest cached 6.1 — the default that
    ``scripts/fetch-kernel.sh`` fetches —, else the newest cached), a Debian release (``6.1.0-56`` or
    ``6.12.117+deb12-amd64``) or a path to a bzImage/vmlinux; with a path, ``modules`` is the
    ``lib/modules/<release>`` directory of the same build (default: the one beside the image).
    """
    cache = cache or cache_dir()
    spec = spec or os.environ.get("TESTBED_KERNEL") or None
    if spec and ("/" in spec or Path(spec).exists()):
        return _resolve_user(Path(spec), modules)
    if spec is None:
        rels = cached_releases(cache)
        rels = [r for r in rels if r.startswith("6.1.0-")] or rels
        if not rels:
            raise ConfigError(
                "kernel",
                "default",
                f"no kernel in {cache}/kernels",
                "run `make setup` or `scripts/fetch-kernel.sh`",
            )
        release = rels[-1]
    elif re.fullmatch(r"\d+\.\d+", spec):  # a series: its newest cached build
        rels = [r for r in cached_releases(cache) if r.startswith(spec + ".")]
        if not rels:
            raise ConfigError("kernel", spec, f"no {spec}.x kernel in {cache}/kernels",
                              f"run `scripts/fetch-kernel.sh {spec}` (make setup fetches 6.1 and 6.12)")
        release = rels[-1]
    else:
        release = _normalise_release(spec)
    root = cache / "kernels" / release
    if not (root / ".complete").exists():
        raise ConfigError(
            "kernel",
            release,
            f"not in the cache {root}",
            f"run `scripts/fetch-kernel.sh {release}`",
        )
    image = root / "vmlinux" if (root / "vmlinux").exists() else root / "vmlinuz"
    return KernelFiles(release, image, root / "lib" / "modules" / release)


def _resolve_user(image: Path, modules: Path | None) -> KernelFiles:
    if not image.is_file():
        raise ConfigError("kernel", str(image), "no such file", "give a bzImage or vmlinux path")
    if modules is None:  # the build's module tree beside the image, as for a UML binary
        found = sorted(p.parent for p in image.parent.glob("lib/modules/*/modules.dep"))
        found += sorted(p.parent for p in image.parent.glob("modules/*/modules.dep"))
        if not found:
            raise ConfigError(
                "kernel",
                str(image),
                "no module tree beside it",
                "install the build's modules next to the image (make modules_install "
                "INSTALL_MOD_PATH=<image dir>) and run depmod",
            )
        modules = found[-1]
    if not (modules / "modules.dep").is_file():
        raise ConfigError(
            "kernel",
            str(modules),
            "no modules.dep",
            f"run `depmod -b <root> {modules.name}` on the build's module tree",
        )
    return KernelFiles(modules.name, image, modules)
