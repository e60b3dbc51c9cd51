"""Named network namespaces: running commands and functions inside them.

Every lab node is a named netns (``ip netns list`` shows it, ``ip netns exec NAME`` works for
users). Commands go through ``ip netns exec`` because it also binds
``/etc/netns/NAME/resolv.conf`` over ``/etc/resolv.conf``: that is how a node resolves through
the lab's named and never through the host's resolver.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from testbed.errors import CommandError, TestbedError

NETNS_RUN_DIR = Path("/run/netns")
NETNS_ETC_DIR = Path("/etc/netns")

T = TypeVar("T")


def exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()


def list_names() -> list[str]:
    if not NETNS_RUN_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_RUN_DIR.iterdir())


def exec_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside ``netns`` (or as is when netns is None)."""
    return (["ip", "netns", "exec", netns] if netns else []) + list(argv)


def run(
    netns: str | None,
    argv: Sequence[str],
    *,
    timeout: float = 30.0,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command in a namespace, capture its output, raise CommandError on failure."""
    full = exec_argv(netns, argv)
    try:
        cp = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input, check=False)
    except subprocess.TimeoutExpired as e:
        raise CommandError(full, -1, f"timed out after {timeout:g} s") from e
    except FileNotFoundError as e:
        raise CommandError(full, 127, str(e)) from e
    if check and cp.returncode != 0:
        raise CommandError(full, cp.returncode, cp.stderr or cp.stdout)
    return cp


def spawn(
    netns: str | None,
    argv: Sequence[str],
    *,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    err_log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running process in a namespace, in its own session (it outlives the CLI);
    standard error goes with the output to ``log``, or to ``err_log`` when given."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    err = open(err_log, "ab") if err_log else subprocess.STDOUT  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            exec_argv(netns, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            env=env,
        )
    finally:
        for f in (out, err):
            if hasattr(f, "close"):
                f.close()


def pids(netns: str) -> list[int]:
    """PIDs of every process whose network namespace is ``netns``."""
    cp = run(None, ["ip", "netns", "pids", netns], check=False, timeout=10)
    return [int(x) for x in cp.stdout.split() if x.isdigit()]


def kill_all(netns: str, grace: float = 2.0) -> None:
    """TERM, wait, then KILL every process in the namespace (only the lab's own processes)."""
    from testbed.host.poll import poll_until
    from testbed.host.procs import alive, signal_pid

    victims = pids(netns)
    for pid in victims:
        signal_pid(pid, signal.SIGTERM)
    poll_until(lambda: not any(alive(p) for p in victims), grace)
    for pid in pids(netns):
        signal_pid(pid, signal.SIGKILL)


def optimistic_dad_supported() -> bool:
    """Was this kernel built with IPv6 optimistic DAD (CONFIG_IPV6_OPTIMISTIC_DAD)?"""
    return Path("/proc/sys/net/ipv6/conf/default/optimistic_dad").exists()


def label_of(name: str) -> str:
    """The ownership label of a namespace: the alias of its loopback (``testbed:<lab>``)."""
    cp = run(None, ["ip", "-n", name, "-j", "link", "show", "dev", "lo"], check=False, timeout=10)
    try:
        return str(json.loads(cp.stdout or "[]")[0].get("ifalias", ""))
    except (ValueError, IndexError):
        return ""


def remove(name: str, grace: float = 1.0) -> None:
    """Kill every process in the namespace, then delete it (its veth ends go with it)."""
    if exists(name):
        kill_all(name, grace=grace)
        run(None, ["ip", "netns", "del", name], check=False, timeout=10)


def call_in(netns: str, fn: Callable[..., T], *args: Any, timeout: float = 30.0) -> T:
    """Run ``fn(*args)`` in a forked child that has joined ``netns``; return its result.

    Used for probes (DNS queries, socket checks) that would otherwise cost a process start
    each. The child never returns into the caller's code: it exits after sending the result.
    """
    from pyroute2.netns import setns  # local: pyroute2 import is slow, most callers never need it

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            setns(netns, flags=0)
            payload = (True, fn(*args))
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
            payload = (False, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
        try:
            data = pickle.dumps(payload)
        except Exception as e:  # noqa: BLE001
            data = pickle.dumps((False, f"unpicklable result: {e}"))
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(w)
    import selectors
    import time

    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    with os.fdopen(r, "rb", buffering=0) as f, selectors.DefaultSelector() as sel:
        sel.register(f, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise TestbedError(f"call in netns {netns} timed out after {timeout:g} s")
            chunk = f.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    os.waitpid(pid, 0)
    ok, value = pickle.loads(b"".join(chunks))
    if not ok:
        raise TestbedError(f"call in netns {netns} failed: {value}")
    return value
