#!/usr/bin/python
"""Ansible module: the testbed package on a host, in one module run.

Written for testbed (ansible-core's pip and unarchive would take four module runs, each 2-5 s
on a User-Mode Linux host): a venv at ``prefix``/venv made where missing; the package's
requirements installed only when the venv cannot import them (from the index, or ``pip_args``
such as ``--no-index --find-links DIR``); the source archive (base64 in the arguments)
unpacked to ``prefix``/src when its checksum differs from the one unpacked last; a .pth file
putting it on the venv's path.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import tarfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: testbed_package
short_description: venv, requirements (where missing), the package's source, its .pth file
options:
  archive_b64: {type: str, required: true, description: the source archive (.tar.gz), base64}
  prefix: {type: str, default: /opt/testbed}
  requirements: {type: list, elements: str, default: []}
  imports: {type: list, elements: str, default: []}
  pip_args: {type: list, elements: str, default: []}
"""


def run(m: AnsibleModule, argv: list[str]) -> str:
    cp = subprocess.run(argv, capture_output=True, text=True, check=False)
    if cp.returncode != 0:
        m.fail_json(msg=f"`{' '.join(argv[:4])}` exited {cp.returncode}: "
                        + " | ".join((cp.stdout + cp.stderr).strip().splitlines()[-3:]))
    return cp.stdout


def main() -> None:
    m = AnsibleModule(argument_spec={
        "archive_b64": {"type": "str", "required": True, "no_log": True},
        "prefix": {"type": "str", "default": "/opt/testbed"},
        "requirements": {"type": "list", "elements": "str", "default": []},
        "imports": {"type": "list", "elements": "str", "default": []},
        "pip_args": {"type": "list", "elements": "str", "default": []},
    })
    p = m.params
    venv, src = os.path.join(p["prefix"], "venv"), os.path.join(p["prefix"], "src")
    python = os.path.join(venv, "bin", "python")
    done: list[str] = []
    os.makedirs(p["prefix"], exist_ok=True)
    if not os.path.exists(python):
        run(m, ["python3", "-m", "venv", venv])
        done.append("venv")
    if p["imports"]:
        probe = subprocess.run([python, "-c", "import " + ", ".join(p["imports"])], capture_output=True,
                               check=False)
        if probe.returncode != 0:
            run(m, [python, "-m", "pip", "install", "-q", *p["pip_args"], *p["requirements"]])
            done.append("requirements")
    data = base64.b64decode(p["archive_b64"])
    digest = hashlib.sha256(data).hexdigest()
    marker = os.path.join(p["prefix"], "src.sha256")
    try:
        with open(marker) as f:
            unpacked = f.read().strip()
    except OSError:
        unpacked = ""
    if unpacked != digest or not os.path.isdir(os.path.join(src, "testbed")):
        new = src + ".new"
        shutil.rmtree(new, ignore_errors=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 (and Debian's 3.11.2 updates)
                tar.extractall(new, filter="data")
            else:
                tar.extractall(new)  # noqa: S202 - our own archive, made by `testbed deploy`
        shutil.rmtree(src, ignore_errors=True)
        os.replace(new, src)
        with open(marker, "w") as f:
            f.write(digest + "\n")
        done.append("source")
    site = run(m, [python, "-c", "import site; print(site.getsitepackages()[0])"]).strip()
    pth = os.path.join(site, "testbed.pth")
    try:
        with open(pth) as f:
            current = f.read().strip()
    except OSError:
        current = ""
    if current != src:
        with open(pth, "w") as f:
            f.write(src + "\n")
        done.append("pth")
    m.exit_json(changed=bool(done), done=done, python=python)


if __name__ == "__main__":
    main()
