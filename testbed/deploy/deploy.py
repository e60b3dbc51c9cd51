"""``testbed deploy INVENTORY``: the site playbook on the inventory's hosts, and its summary."""

from __future__ import annotations

from pathlib import Path

from testbed.deploy import ansible, inventory, package
from testbed.progress import Progress, quiet


def deploy(inv: Path, out: Path, limit: str | None = None,
           progress: Progress = quiet) -> ansible.PlaybookResult:
    """Deploy; writes ``out/summary.json`` and the runner's files under ``out/ansible/``."""
    data = inventory.load(inv)
    out.mkdir(parents=True, exist_ok=True)
    extravars = {"testbed_package_archive": str(package.archive(out / "testbed-src.tar.gz")),
                 "testbed_requirements_lock": package.requirements_lock()}
    result = ansible.run_playbook("site.yml", inv, out / "ansible", extravars=extravars, limit=limit,
                                  progress=progress, hosts=sorted(inventory.hosts(data)))
    result.write(out / "summary.json")
    return result
