#!/usr/bin/python
"""Ansible module: a role's directories and rendered files, and each daemon's config checker.

Written for testbed so that a role writes all its files in one module run (a module run costs
1-5 s, the most on a User-Mode Linux host: ``copy`` in a loop costs that per file). A file is written
only when its content differs; the result names the daemons whose files changed, for
``testbed_daemon``'s ``restart``. Checkers (``named-checkconf``, ``dhcpd -t``, ``radvd -c``)
run every time, after the files are in place, and fail the task with their words.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: testbed_files
short_description: directories, files (path, content, mode, daemon) and config checks in one run
options:
  dirs: {type: list, elements: str, default: []}
  files: {type: list, elements: dict, default: [], description: "each: path, content, mode (octal
    string), daemon (restarted when it changes), check (argv), create_only (keep an existing file),
    follows (a path: written only when that file changed in this run, or when missing),
    remove (paths deleted when this one is written)"}
"""


def main() -> None:
    m = AnsibleModule(argument_spec={
        "dirs": {"type": "list", "elements": "str", "default": []},
        "files": {"type": "list", "elements": "dict", "default": []},
    }, supports_check_mode=True)
    changed: list[str] = []
    for d in m.params["dirs"]:
        if not os.path.isdir(d):
            changed.append(d)
            if not m.check_mode:
                os.makedirs(d, mode=0o755, exist_ok=True)
    daemons: list[str] = []
    for f in m.params["files"]:
        path, content = f["path"], str(f.get("content") or "")
        mode = int(str(f.get("mode") or "0644"), 8)
        try:
            with open(path) as fh:
                current: str | None = fh.read()
        except OSError:
            current = None
        stale = f.get("follows") in changed if f.get("follows") else current != content
        if current is not None and (not stale or f.get("create_only")):
            if os.stat(path).st_mode & 0o7777 != mode and not m.check_mode:
                os.chmod(path, mode)
            continue
        changed.append(path)
        if f.get("daemon"):
            daemons.append(f["daemon"])
        if m.check_mode:
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".testbed-")
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        for gone in f.get("remove") or []:
            if os.path.exists(gone):
                os.unlink(gone)
    for f in m.params["files"]:
        if f.get("check") and not m.check_mode:
            cp = subprocess.run(f["check"], capture_output=True, text=True, check=False)
            if cp.returncode != 0:
                words = " | ".join((cp.stdout + cp.stderr).strip().splitlines()[-4:])
                m.fail_json(msg=f"{f['path']} rejected by `{' '.join(f['check'][:2])}`: {words}",
                            changed_files=changed)
    m.exit_json(changed=bool(changed), changed_files=changed, daemons=sorted(set(daemons)))


if __name__ == "__main__":
    main()
