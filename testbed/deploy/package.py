"""The testbed package as the roles install it on a host: its source as a reproducible archive.

The same bytes for the same source (sorted names, fixed times and owners, gzip without a
timestamp), so the copy task sees an unchanged checksum and a second deploy changes nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from testbed import __version__
from testbed.backends.images import PACKAGE_DIR, package_files, requirements

# where the testbed_package module records the sha256 of the archive it unpacked, and the source
SOURCE_DIGEST = Path("/opt/testbed/src.sha256")
SOURCE_INIT = Path("/opt/testbed/src/testbed/__init__.py")


def archive(path: Path, package: Path = PACKAGE_DIR) -> Path:
    """Write ``testbed/`` (source and data, no bytecode) as a .tar.gz at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(archive_bytes(package))
    return path


def version(package: Path = PACKAGE_DIR) -> str:
    """This package's deployable version: its release and the first 12 hex digits of its
    archive's sha256 (what a deployed host records as ``SOURCE_DIGEST``)."""
    return f"{__version__}+{hashlib.sha256(archive_bytes(package)).hexdigest()[:12]}"


def deployed_version(digest: str, init_py: str) -> str:
    """A host's deployed version from its ``SOURCE_DIGEST`` and ``SOURCE_INIT``'s text."""
    release = next((line.split("=", 1)[1].strip().strip("\"'") for line in init_py.splitlines()
                    if line.startswith("__version__")), "?")
    return f"{release}+{digest.strip()[:12] or '?'}"


def archive_bytes(package: Path = PACKAGE_DIR) -> bytes:
    """``testbed/`` as a reproducible .tar.gz: the same bytes for the same source."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in package_files(package):
            data = p.read_bytes()
            info = tarfile.TarInfo(f"testbed/{p.relative_to(package)}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(buf.getvalue())
    return out.getvalue()


def requirements_lock() -> str:
    """What a host's venv needs for the package: the images' runtime lock (no mininet), every
    requirement pinned with its hashes."""
    return requirements()
