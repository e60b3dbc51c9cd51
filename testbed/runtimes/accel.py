"""Which QEMU accelerator a kernel node gets: KVM where it really boots the guest, else TCG.

Creating a KVM VM proves little: on a host whose /dev/kvm is a paravirtual one (PVM), QEMU
starts under ``-accel kvm`` and a stock distribution kernel then hangs or aborts. So the test is
a boot: the guest kernel with the lab's initramfs must print its init's first line on the
serial console within a time limit. The answer is cached per host (host kernel, CPU model,
QEMU version, guest kernel) in ``<cache>/accel.json``; ``TESTBED_ACCEL=kvm|tcg`` overrides it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from testbed.runtimes.kernels import KernelFiles, cache_dir

QEMU = "qemu-system-x86_64"
KVM_DEVICE = Path("/dev/kvm")
CONSOLE_MARKER = b"tb-init:"  # the first line images/init.sh prints
PROBE_TIMEOUT = 10.0  # KVM reaches the init in well under a second; TCG takes ~4 s


def kvm_openable(device: Path = KVM_DEVICE) -> bool:
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def host_key(kernel: KernelFiles) -> str:
    """What the answer depends on: host kernel, CPU model, QEMU binary, guest kernel."""
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    except OSError:
        pass
    qemu = ""
    try:
        qemu = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=10,
                              check=False).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        pass
    raw = "|".join((platform.release(), cpu, qemu, kernel.release))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def probe_kvm(kernel: KernelFiles, timeout: float = PROBE_TIMEOUT) -> bool:
    """Boot ``kernel`` under KVM until its init speaks on the console, bounded by ``timeout``."""
    from testbed.runtimes import initramfs

    initrd = initramfs.build(kernel)
    argv = [QEMU, "-M", "pc", "-accel", "kvm", "-cpu", "host", "-m", "128", "-nodefaults",
            "-no-user-config", "-display", "none", "-no-reboot", "-kernel", str(kernel.image),
            "-initrd", str(initrd), "-append", "console=ttyS0 panic=-1 quiet", "-serial", "stdio"]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
    except OSError:
        return False
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while CONSOLE_MARKER not in seen:
                left = deadline - time.monotonic()
                if left <= 0 or proc.poll() is not None and not sel.select(0):
                    return False
                if sel.select(min(left, 0.5)):
                    seen = (seen + (proc.stdout.read() or b""))[-4096:]
            return True
    finally:
        proc.kill()
        proc.wait()


def choose(
    kernel: KernelFiles,
    *,
    probe: Callable[[KernelFiles], bool] = probe_kvm,
    openable: Callable[[], bool] = kvm_openable,
    key: Callable[[KernelFiles], str] = host_key,
    cache_file: Path | None = None,
) -> str:
    """"kvm" or "tcg" for booting ``kernel`` on this host (see the module docstring)."""
    forced = os.environ.get("TESTBED_ACCEL", "").strip().lower()
    if forced in ("kvm", "tcg"):
        return forced
    if not openable():
        return "tcg"
    path = cache_file or cache_dir() / "accel.json"
    k = key(kernel)
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if k in cached:
        return str(cached[k])
    result = "kvm" if probe(kernel) else "tcg"
    cached[k] = result
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cached, indent=1))
        tmp.replace(path)
    except OSError:
        pass  # an unwritable cache only costs a probe next time
    return result
