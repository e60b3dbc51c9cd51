"""The Docker engine a docker lab talks to: the system's dockerd when it answers, else a private
one that testbed starts and stops.

The private engine keeps its image cache under ``/var/lib/testbed/docker`` (it survives a
reboot: images are built once), or ``$TESTBED_DOCKER_DATA``. overlay2 cannot stack on overlayfs
(dockerd: "error initializing graphdriver: driver not supported"), so where /var/lib is an
overlay, as in a container running testbed, the cache goes to the first candidate that is not:
``/var/lib/docker/testbed`` (the volume nested engines are given), then ``/tmp/testbed-docker``.
Its sockets and state under ``/run/testbed-engine``, outside
every lab run root (``clean`` sweeps a run root's unknown directories as crashed labs). It is
started with ``--bridge=none --iptables=false --ip-forward=false --ip-masq=false``, so it
creates no bridge and leaves the host's firewall and forwarding settings alone: lab containers
have no Docker network at all (``network_mode: none``), their links are veth pairs the backend
makes. dockerd starts its own containerd under the exec root unless a system containerd socket
exists, in which case it uses that one; the containerd namespaces are testbed's own either way,
so the private engine never sees another engine's containers.

Labs and image builds hold the engine's lock shared while they add containers or images; the
engine is stopped (lock held exclusive) when nothing uses it any more: no container left on it.
Every engine call has a timeout: the client's socket timeout, and explicit deadlines for start
and stop.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from testbed.errors import MissingDependency, TestbedError
from testbed.host import mounts
from testbed.host.daemonctl import tail
from testbed.host.poll import poll_until
from testbed.host.procs import alive

SYSTEM_URL = "unix:///var/run/docker.sock"
PRIVATE_RUN = Path("/run/testbed-engine")
DATA_CANDIDATES = (Path("/var/lib/testbed/docker"), Path("/var/lib/docker/testbed"),
                   Path("/tmp/testbed-docker"))
PRIVATE_URL = f"unix://{PRIVATE_RUN}/docker.sock"
API_TIMEOUT = 60.0  # seconds, per engine request (socket timeout)
BUILD_TIMEOUT = 1200.0  # an image build streams for minutes; apt can be silent for long
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0

Kind = Literal["system", "private"]


class EngineError(TestbedError):
    """No Docker engine answers and none can be started; the message names the fix."""


@dataclass
class Engine:
    kind: Kind
    url: str
    client: Any  # docker.DockerClient

    def describe(self) -> dict[str, str]:
        info = {"kind": self.kind, "url": self.url}
        try:
            info["version"] = str(self.client.version().get("Version", ""))
        except Exception as e:  # noqa: BLE001 - status reports, it does not fail
            info["version"] = f"unreachable ({type(e).__name__})"
        return info


def client(url: str, timeout: float = API_TIMEOUT) -> Any:
    """A Docker SDK client for ``url``; no request is made until it is used."""
    try:
        import docker
    except ImportError as e:
        raise MissingDependency("python module docker", "python3-docker (pip: docker)") from e
    # a fixed API version: "auto" would cost a request per client; 1.41 is Docker 20.10's
    return docker.DockerClient(base_url=url, version="1.41", timeout=timeout)


def _answers(url: str) -> Any | None:
    """A client for ``url`` if an engine answers there, else None."""
    path = url.removeprefix("unix://")
    if url.startswith("unix://") and not Path(path).exists():
        return None
    c = client(url, timeout=5.0)
    try:
        c.ping()
    except Exception:  # noqa: BLE001 - any failure means: not this engine
        c.close()
        return None
    c.close()
    return client(url)


def system_url() -> str:
    return os.environ.get("DOCKER_HOST") or SYSTEM_URL


def find() -> Engine | None:
    """The engine in use, without starting one: the system's first, then the private one."""
    c = _answers(system_url())
    if c is not None:
        return Engine("system", system_url(), c)
    c = _answers(PRIVATE_URL)
    if c is not None:
        return Engine("private", PRIVATE_URL, c)
    return None


def at(url: str) -> Engine | None:
    """The engine at a recorded ``url`` if it answers (a lab's state names its engine)."""
    c = _answers(url)
    if c is None:
        return None
    return Engine("private" if url == PRIVATE_URL else "system", url, c)


def connect() -> Engine:
    """The engine to use, starting the private one if none answers."""
    found = find()
    if found is not None:
        return found
    with _lock(exclusive=True):
        found = find()  # another process may have started it meanwhile
        if found is not None:
            return found
        return _start_private()


def fs_type(path: Path) -> str:
    """The type of the filesystem that holds ``path`` (or would, once made)."""
    return mounts.mount_of(path.resolve())[1]


def private_data() -> Path:
    """Where the private engine keeps images: ``$TESTBED_DOCKER_DATA``, else the first candidate
    not on overlayfs (the module docstring says why)."""
    if os.environ.get("TESTBED_DOCKER_DATA"):
        return Path(os.environ["TESTBED_DOCKER_DATA"])
    return next((p for p in DATA_CANDIDATES if fs_type(p) != "overlay"), DATA_CANDIDATES[-1])


def dockerd_argv() -> list[str]:
    return [
        "dockerd",
        "--data-root", str(private_data()),
        "--exec-root", str(PRIVATE_RUN / "exec"),
        "--host", PRIVATE_URL,
        "--pidfile", str(PRIVATE_RUN / "dockerd.pid"),
        "--containerd-namespace", "testbed",
        "--containerd-plugins-namespace", "testbed-plugins",
        "--storage-driver", "overlay2",
        # the host firewall, forwarding and bridges are not the engine's to change
        "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
        "--ip-masq=false",
    ]


def _start_private() -> Engine:
    from shutil import which

    if which("dockerd", path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
        raise EngineError(f"no Docker engine answers at {system_url()} and dockerd is not installed: "
                          "install the Debian package 'docker.io' (run `make setup`)")
    PRIVATE_RUN.mkdir(parents=True, exist_ok=True)
    private_data().mkdir(parents=True, exist_ok=True)
    log = PRIVATE_RUN / "dockerd.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(dockerd_argv(), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    found = poll_until(lambda: _answers(PRIVATE_URL) or proc.poll() is not None, START_TIMEOUT,
                       interval=0.05, backoff=1.5, max_interval=0.5)
    if found is None or found is True:
        exited = proc.poll() is not None
        if not exited:
            _terminate(proc.pid)
        how = "exited" if exited else f"did not start within {START_TIMEOUT:g} s"
        raise EngineError(f"the private dockerd {how} ({log}): {tail(log, 3)}")
    return Engine("private", PRIVATE_URL, found)


def _private_pid() -> int | None:
    try:
        pid = int((PRIVATE_RUN / "dockerd.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def _terminate(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if poll_until(lambda: not alive(pid), STOP_TIMEOUT, interval=0.05, backoff=1.5,
                      max_interval=0.5):
            return


def stop_if_idle() -> bool:
    """Stop the private engine when no container is left on it; True if it was stopped.
    The system engine is never stopped."""
    if _private_pid() is None:
        return False
    with _lock(exclusive=True, wait=0.0) as held:
        if not held:
            return False  # a lab or a build is using it right now
        c = _answers(PRIVATE_URL)
        if c is not None:
            try:
                if c.containers.list(all=True):
                    return False
            finally:
                c.close()
        pid = _private_pid()
        if pid is None:
            return False
        _terminate(pid)
        return True


@contextmanager
def using() -> Iterator[Engine]:
    """The engine, held in use (shared lock) while the caller adds containers or images: an
    idle-stop from another process cannot stop it under the caller."""
    for _ in range(3):
        with _lock(exclusive=False):
            engine = find()
            if engine is not None:
                try:
                    yield engine
                finally:
                    engine.client.close()
                return
        connect().client.close()  # starting takes the lock exclusive: not while we hold it
    raise EngineError("the private Docker engine stopped again right after each start "
                      f"(see {PRIVATE_RUN / 'dockerd.log'})")


@contextmanager
def _lock(exclusive: bool, wait: float = START_TIMEOUT + STOP_TIMEOUT) -> Iterator[bool]:
    PRIVATE_RUN.mkdir(parents=True, exist_ok=True)
    with open(PRIVATE_RUN / "engine.lock", "w") as f:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB

        def take() -> bool:
            try:
                fcntl.flock(f, mode)
                return True
            except BlockingIOError:
                return False

        held = take() or (wait > 0 and bool(poll_until(take, wait, interval=0.05, backoff=1.5,
                                                        max_interval=0.5)))
        if not held and wait > 0:
            raise EngineError(f"the private Docker engine stayed locked for {wait:g} s "
                              f"({PRIVATE_RUN / 'engine.lock'})")
        try:
            yield held
        finally:
            if held:
                fcntl.flock(f, fcntl.LOCK_UN)
