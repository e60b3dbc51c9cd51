"""The testbed package as the roles install it on a host: its source as a reproducible archive.

The same bytes for the same source (sorted names, fixed times and owners, gzip without a
timestamp), so the copy task sees an unchanged checksum and a second deploy changes nothing.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from testbed.backends.images import PACKAGE_DIR, package_files, requirements


def archive(path: Path, package: Path = PACKAGE_DIR) -> Path:
    """Write ``testbed/`` (source and data, no bytecode) as a .tar.gz at ``path``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in package_files(package):
            data = p.read_bytes()
            info = tarfile.TarInfo(f"testbed/{p.relative_to(package)}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(buf.getvalue())
    return path


def requirements_lock() -> str:
    """What a host's venv needs for the package: the images' runtime lock (no mininet), every
    requirement pinned with its hashes."""
    return requirements()
