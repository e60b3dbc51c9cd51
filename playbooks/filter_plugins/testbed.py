"""Jinja filters for the playbooks: each role's files and daemons, rendered by the testbed
package's own service renderers (``testbed.deploy.render``) from the inventory's topology, so
a deployed host gets what a lab node gets. Runs on the controller, which has the package."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from testbed.deploy import render


def plain(value: Any) -> Any:
    """Ansible's templated containers and tagged strings as plain Python data (the renderers
    validate the topology with pydantic, which wants dicts, lists and str)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return type(value)(value) if type(value) in (int, float) else float(value)
    return str(value)


def _plain_args(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return fn(*(plain(a) for a in args), **{k: plain(v) for k, v in kwargs.items()})

    wrapped.__name__ = fn.__name__
    return wrapped


def file_b64(path: str) -> str:
    """A controller file's bytes as base64 (the package archive, sent inside a module's args)."""
    import base64

    with open(str(path), "rb") as f:
        return base64.b64encode(f.read()).decode()


class FilterModule:
    def filters(self):
        return {"testbed_file_b64": file_b64} | {name: _plain_args(fn) for name, fn in {
            "testbed_network": render.network,
            "testbed_dns_server": render.dns_server,
            "testbed_access_router": render.access_router,
            "testbed_mobile_node": render.mobile_node,
            "testbed_correspondent": render.correspondent,
            "testbed_capture": render.capture,
            "testbed_traffic_client": render.traffic_client,
            "testbed_start_cmd": render.start_cmd,
            "testbed_stop_cmd": render.stop_cmd,
        }.items()}
