"""Resolving a UML kernel spec to the binary and module tree a UML node boots.

The default is Debian's ``user-mode-linux`` package (``/usr/bin/linux.uml``, modules under
``/usr/lib/uml/modules/<release>`` with modules.dep), which ``make setup`` installs. A user's
own build is given as the path of its ``linux`` binary (made with ``ARCH=um``) plus the
``lib/modules/<release>`` directory of the same build, after ``depmod``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import ConfigError
from testbed.runtimes.node_root import NodeRoot

DEBIAN_BINARY = Path("/usr/bin/linux.uml")
DEBIAN_MODULES = Path("/usr/lib/uml/modules")
DEFAULT_SPECS = ("uml", "debian", "")


@dataclass(frozen=True)
class UmlKernel:
    """What a UML node boots: the kernel binary and its module tree."""

    release: str  # `uname -r` in the guest, e.g. 6.1.176
    binary: Path
    modules_dir: Path  # .../<release>, holding modules.dep

    @property
    def modules_root(self) -> Path:
        """The parent of ``modules_dir``: ``modprobe -d`` wants a dir with lib/modules/<release>
        inside, which the guest init makes by a bind mount of this one."""
        return self.modules_dir.parent


def available(binary: Path = DEBIAN_BINARY, modules: Path = DEBIAN_MODULES) -> bool:
    """Is Debian's UML build installed (binary and one module tree)?"""
    return os.access(binary, os.X_OK) and any(modules.glob("*/modules.dep"))


def resolve(spec: str | None = None, *, modules: Path | None = None,
            debian_binary: Path = DEBIAN_BINARY, debian_modules: Path = DEBIAN_MODULES,
            root: NodeRoot | None = None) -> UmlKernel:
    """``spec``: None/"uml"/"debian" for Debian's build, or a path to a ``linux`` ARCH=um binary
    (``modules`` then names its ``lib/modules/<release>``, else ``<binary dir>/modules/*``).
    Paths are in ``root`` (the host's by default: a container's image for a node in one); the
    returned kernel names them as that root does."""
    root = root or NodeRoot()
    where = "" if root.is_host else " in the node's image"
    spec = spec if spec is not None else os.environ.get("TESTBED_UML_KERNEL", "")
    if spec.strip() in DEFAULT_SPECS:
        if not os.access(root.host_path(debian_binary), os.X_OK):
            raise ConfigError("kernel", "uml", f"{debian_binary} not found{where}",
                              f"install the Debian package 'user-mode-linux'{where or ' (make setup)'}")
        trees = sorted(p.parent for p in root.host_path(debian_modules).glob("*/modules.dep"))
        if not trees:
            raise ConfigError("kernel", "uml", f"no module tree under {debian_modules}{where}",
                              "reinstall the Debian package 'user-mode-linux'")
        return UmlKernel(trees[-1].name, debian_binary, debian_modules / trees[-1].name)
    binary = Path(spec).expanduser()
    if not root.host_path(binary).is_file() or not os.access(root.host_path(binary), os.X_OK):
        which = shutil.which(spec) if root.is_host else None
        if which is None:
            raise ConfigError("kernel", spec, f"no such executable{where}",
                              "give the path of a linux binary built with ARCH=um, or `uml`")
        binary = Path(which)
    binary = root.real(binary)
    if modules is None:
        beside = root.host_path(binary.parent)
        found = sorted(p.parent for p in beside.glob("modules/*/modules.dep"))
        found += sorted(p.parent for p in beside.glob("lib/modules/*/modules.dep"))
        if not found:
            raise ConfigError("kernel", str(binary), f"no module tree beside it{where}",
                              "install its modules (make ARCH=um modules_install "
                              "INSTALL_MOD_PATH=<binary dir>) and run depmod")
        modules = binary.parent / found[-1].relative_to(beside)
    if not root.host_path(modules / "modules.dep").is_file():
        raise ConfigError("kernel", str(modules), f"no modules.dep{where}",
                          f"run `depmod -b <root> {modules.name}` on the build's module tree")
    return UmlKernel(modules.name, binary, root.real(modules))
