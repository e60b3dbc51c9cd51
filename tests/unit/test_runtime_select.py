"""Which stack a node gets (auto: host, else uml, else qemu) and which QEMU accelerator."""

from __future__ import annotations

import json

import pytest

from testbed.errors import ConfigError
from testbed.model.topology import SctpSettings
from testbed.runtimes import accel, kernel_nodes
from testbed.runtimes.kernels import KernelFiles


@pytest.mark.parametrize("host, uml, want", [(True, True, "host"), (False, True, "uml"),
                                             (False, False, "qemu")])
def test_auto_prefers_host_then_uml_then_qemu(monkeypatch, host, uml, want):
    monkeypatch.setattr(kernel_nodes, "host_has_sctp", lambda: host)
    monkeypatch.setattr(kernel_nodes, "uml_available", lambda: uml)
    assert kernel_nodes.stack_of(SctpSettings(stack="auto")) == want


def test_vm_is_qemu_and_host_without_sctp_is_refused(monkeypatch):
    monkeypatch.setattr(kernel_nodes, "host_has_sctp", lambda: False)
    assert kernel_nodes.stack_of(SctpSettings(stack="vm")) == "qemu"
    assert kernel_nodes.stack_of(SctpSettings()) == "none"
    with pytest.raises(ConfigError, match="host kernel has no SCTP"):
        kernel_nodes.stack_of(SctpSettings(stack="host"))


K = KernelFiles("6.1.0-9-amd64", __file__, __file__)  # type: ignore[arg-type]


def _choose(tmp_path, probe_result: bool, openable: bool = True, calls: list | None = None):
    def probe(k):
        if calls is not None:
            calls.append(k.release)
        return probe_result

    return accel.choose(K, probe=probe, openable=lambda: openable, key=lambda k: "host-a",
                        cache_file=tmp_path / "accel.json")


def test_kvm_only_when_the_guest_boots_under_it(tmp_path, monkeypatch):
    monkeypatch.delenv("TESTBED_ACCEL", raising=False)
    assert _choose(tmp_path, True) == "kvm"
    (tmp_path / "accel.json").unlink()
    assert _choose(tmp_path, False) == "tcg"  # /dev/kvm opens, but the guest never spoke


def test_no_kvm_device_means_tcg_without_a_probe(tmp_path, monkeypatch):
    monkeypatch.delenv("TESTBED_ACCEL", raising=False)
    calls: list = []
    assert _choose(tmp_path, True, openable=False, calls=calls) == "tcg"
    assert calls == []


def test_the_answer_is_cached_per_host(tmp_path, monkeypatch):
    monkeypatch.delenv("TESTBED_ACCEL", raising=False)
    calls: list = []
    assert _choose(tmp_path, False, calls=calls) == "tcg"
    assert _choose(tmp_path, True, calls=calls) == "tcg"  # cached: no second probe
    assert calls == ["6.1.0-9-amd64"]
    assert json.loads((tmp_path / "accel.json").read_text()) == {"host-a": "tcg"}


def test_the_environment_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("TESTBED_ACCEL", "kvm")
    assert _choose(tmp_path, False, openable=False) == "kvm"
