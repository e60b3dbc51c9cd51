"""What a lab could leave on the host: the check every teardown test makes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from testbed.host import netns
from testbed.state import lab_dir


def leftovers(lab: str) -> dict[str, list[str]]:
    """Everything a lab called ``lab`` could have left on the host."""
    procs = subprocess.run(["pgrep", "-af", f"{lab_dir(lab)}/"], capture_output=True,
                           text=True).stdout.splitlines()
    mounts = [ln for ln in Path("/proc/mounts").read_text().splitlines()
              if f"/run/netns/{lab}-" in ln]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {
        "netns": [n for n in netns.list_names() if n.startswith(f"{lab}-")],
        "etc": [str(p) for p in netns.NETNS_ETC_DIR.glob(f"{lab}-*")] if netns.NETNS_ETC_DIR.exists()
        else [],
        "procs": [p for p in procs if "pgrep" not in p],
        "mounts": mounts,
        "root_links": [ln for ln in links.splitlines() if f"testbed:{lab}" in ln],
        "run_dir": [str(lab_dir(lab))] if lab_dir(lab).exists() else [],
    }
