#!/usr/bin/python
"""Ansible module: the testbed package on a host, in one module run.

Written for testbed (ansible-core's pip and unarchive would take four module runs, each 2-5 s
on a User-Mode Linux host): a venv at ``prefix``/venv made where missing; the package's
requirements installed with ``pip --require-hashes`` from the runtime lock (its text in the
arguments) only when the venv's distributions differ from the lock's pins (from the index, or
``pip_args`` such as ``--no-index --find-links DIR``); the source archive (base64 in the arguments)
unpacked to ``prefix``/src when its checksum differs from the one unpacked last; a .pth file
putting it on the venv's path.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
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
  requirements_lock: {type: str, default: "", description: the runtime lock (pins with hashes)}
  pip_args: {type: list, elements: str, default: []}
"""


def run(m: AnsibleModule, argv: list[str]) -> str:
    cp = subprocess.run(argv, capture_output=True, text=True, check=False)
    if cp.returncode != 0:
        m.fail_json(msg=f"`{' '.join(argv[:4])}` exited {cp.returncode}: "
                        + " | ".join((cp.stdout + cp.stderr).strip().splitlines()[-3:]))
    return cp.stdout


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(text: str) -> dict[str, str]:
    """name -> version of a lock's ``name==version`` requirements (hash lines continue them)."""
    out = {}
    for line in text.splitlines():
        mt = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)", line)
        if mt:
            out[canonical(mt.group(1))] = mt.group(2)
    return out


def installed(m: AnsibleModule, python: str, names: list[str]) -> dict[str, str]:
    """The venv's versions of ``names`` (one interpreter start; absent ones are left out)."""
    code = ("import importlib.metadata as md, json, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = md.version(n)\n"
            "    except md.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    return {canonical(k): v for k, v in json.loads(run(m, [python, "-c", code, *names])).items()}


def main() -> None:
    m = AnsibleModule(argument_spec={
        "archive_b64": {"type": "str", "required": True, "no_log": True},
        "prefix": {"type": "str", "default": "/opt/testbed"},
        "requirements_lock": {"type": "str", "default": ""},
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
    pins = lock_pins(p["requirements_lock"])
    if pins and installed(m, python, list(pins)) != pins:
        lock = os.path.join(p["prefix"], "requirements.txt")
        with open(lock, "w") as f:
            f.write(p["requirements_lock"])
        run(m, [python, "-m", "pip", "install", "-q", "--require-hashes", *p["pip_args"], "-r", lock])
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
