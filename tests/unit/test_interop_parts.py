"""The interop matrix without labs: settings, kernel names, cells, statuses, the files written,
lanes scheduled over fake processes, and a lane's lab reuse over a fake lab and runner."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest

from testbed.errors import ConfigError, LabStateError
from testbed.interop import cell as cellmod
from testbed.interop import engine, html, kernels, lane, matrix, settings
from testbed.interop.kernels import KernelChoice
from testbed.interop.matrix import Cell, CellResult
from testbed.scenario import model
from testbed.state import LabState

UML = KernelChoice("uml", "uml", None, "6.1.176")
Q61 = KernelChoice("6.1", "qemu", "6.1", "6.1.0-56-amd64")
Q612 = KernelChoice("6.12", "qemu", "6.12", "6.12.117+deb12-amd64")
B = settings.BUILTIN


# -- settings ---------------------------------------------------------------------------------
def test_builtin_settings_set_every_sysctl_and_declare_their_outcome():
    assert B["default"].values("mn") == {"addip_enable": 1, "auth_enable": 1, "addip_noauth_enable": 0,
                                         "default_auto_asconf": 0}
    assert B["noauth"].values("cn")["addip_noauth_enable"] == 1
    assert B["noauth"].expect == {"asconf.auth": "fail"}
    assert B["auth-off"].expect == {"continuity.association": "fail"}
    assert B["auto-asconf"].binding == "auto_asconf" and B["auto-asconf"].expect == {"order.trash": "fail"}


def test_settings_file_adds_and_overrides_one_side(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("settings:\n  cn-noauth:\n    sysctls: {addip_noauth_enable: 1}\n    cn: {auth_enable: 0}\n"
                 "    expect: {asconf.auth: fail}\n  default: {description: mine}\n")
    extra = settings.load_file(f)
    chosen = settings.select(["cn-noauth", "default", "cn-noauth"], extra)
    assert [s.name for s in chosen] == ["cn-noauth", "default"]
    assert chosen[0].values("mn")["auth_enable"] == 1 and chosen[0].values("cn")["auth_enable"] == 0
    assert chosen[1].description == "mine"


@pytest.mark.parametrize(("body", "field", "problem"), [
    ("settings:\n  x: {sysctls: {auth_enable: 2}}\n", "settings.x.sysctls.auth_enable", "Input should be"),
    ("settings:\n  x: {sysctls: {autth_enable: 1}}\n", "settings.x.sysctls.autth_enable", ""),
    ("settings:\n  x: {expect: {asconf.nope: fail}}\n", "settings.x.expect", "unknown rule 'asconf.nope'"),
    ("settings:\n  x: {colour: red}\n", "settings.x.colour", "remove it"),
    ("settings:\n  Bad_Name: {}\n", "settings.Bad_Name.name", "pattern"),
    ("other: 1\n", "settings", "expected one mapping"),
])
def test_a_bad_settings_file_is_one_line_naming_file_and_field(tmp_path, body, field, problem):
    f = tmp_path / "s.yaml"
    f.write_text(body)
    with pytest.raises(ConfigError) as e:
        settings.load_file(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: {field}") and problem in msg and "\n" not in msg


def test_an_unknown_setting_names_the_known_ones():
    with pytest.raises(ConfigError, match="auth-of: unknown setting .*default, noauth, auth-off"):
        settings.select(["auth-of"])


# -- kernels ----------------------------------------------------------------------------------
def _elf(path: Path, vaddr: int) -> Path:
    """A 64-bit little-endian ELF header and one PT_LOAD program header at ``vaddr``."""
    hdr = bytearray(64)
    hdr[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", hdr, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", hdr, 0x36, 56, 1)  # e_phentsize, e_phnum
    ph = struct.pack("<IIQQQQQQ", 1, 5, 0, vaddr, vaddr, 0, 0, 0)
    path.write_bytes(bytes(hdr) + ph + bytes(0x300))
    return path


def test_image_kind_tells_uml_binaries_from_kernel_images(tmp_path):
    assert kernels.image_kind(_elf(tmp_path / "linux", 0x60000000)) == "uml"
    assert kernels.image_kind(_elf(tmp_path / "vmlinux", 0xFFFFFFFF81000000)) == "qemu"
    bz = bytearray(0x300)
    bz[0x202:0x206] = b"HdrS"
    (tmp_path / "bzImage").write_bytes(bytes(bz))
    assert kernels.image_kind(tmp_path / "bzImage") == "qemu"
    (tmp_path / "junk").write_bytes(b"#!/bin/sh\n" + bytes(0x300))
    with pytest.raises(ConfigError, match="neither a 64-bit ELF nor a bzImage"):
        kernels.image_kind(tmp_path / "junk")


def test_kernel_names_resolve_to_stacks(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels.uml_kernels, "resolve", lambda spec: SimpleNamespace(release=f"uml:{spec}"))
    monkeypatch.setattr(kernels.qemu_kernels, "resolve", lambda spec: SimpleNamespace(release=f"q:{spec}"))
    user = _elf(tmp_path / "linux", 0x60000000)
    got = kernels.parse_list(f"uml,6.12,6.1.0-56,{user},qemu:{user},uml")
    assert [(k.label, k.stack, k.kernel, k.release) for k in got] == [
        ("uml", "uml", None, "uml:uml"),
        ("6.12", "qemu", "6.12", "q:6.12"),
        ("6.1.0-56", "qemu", "6.1.0-56", "q:6.1.0-56"),
        (str(user), "uml", str(user), f"uml:{user}"),
        (f"qemu:{user}", "qemu", str(user), f"q:{user}"),
    ]
    assert got[3].slug.startswith("linux-") and "/" not in got[3].slug


@pytest.mark.parametrize(("spec", "problem"), [("bogus", "not a kernel name"), ("/no/such", "no such file"),
                                               ("", "empty kernel name")])
def test_a_bad_kernel_name_says_what_is_accepted(spec, problem):
    with pytest.raises(ConfigError, match=problem):
        kernels.parse(spec)


# -- cells and statuses -----------------------------------------------------------------------
def test_plan_is_mn_major_and_only_filters():
    ks, ss = [UML, Q612], [B["default"], B["auth-off"]]
    cells = matrix.plan(ks, ss)
    assert [c.slug for c in cells][:3] == ["uml__uml__default", "uml__uml__auth-off", "uml__6.12__default"]
    assert len(cells) == 8
    only = matrix.parse_only("MN=uml,cn=6.12,CN=uml,SETTING=auth-off", ks, ss)
    assert [c.slug for c in matrix.plan(ks, ss, only)] == ["uml__uml__auth-off", "uml__6.12__auth-off"]
    with pytest.raises(ConfigError, match="'6.1' is not in the matrix"):
        matrix.parse_only("MN=6.1", ks, ss)
    with pytest.raises(ConfigError, match="KEY one of MN, CN, SETTING"):
        matrix.parse_only("KERNEL=uml", ks, ss)


def test_groups_share_a_kernel_pair_longest_first():
    cells = matrix.plan([UML, Q61, Q612], [B["default"], B["noauth"]])
    gs = matrix.groups(cells)
    assert len(gs) == 9 and all(len(g) == 2 and len({c.pair for c in g}) == 1 for g in gs)
    weights = [sum(k.stack == "qemu" for k in (g[0].mn, g[0].cn)) for g in gs]
    assert weights == sorted(weights, reverse=True) and gs[-1][0].pair == ("uml", "uml")


def _verdict(*rules: tuple[str, str, str | None]) -> dict:
    out = []
    for rid, status, expected in rules:
        r = {"id": rid, "status": status}
        if expected:
            r.update(expected=expected, met=status == expected)
        out.append(r)
    return {"rules": out}


@pytest.mark.parametrize(("rules", "want"), [
    ([("asconf.auth", "pass", None), ("order.trash", "skip", None)], ("pass", [], [])),
    ([("asconf.auth", "fail", "fail"), ("order.trash", "pass", None)],
     ("expected-fail", ["asconf.auth"], [])),
    ([("asconf.auth", "pass", "fail")], ("fail", [], ["asconf.auth"])),
    ([("asconf.auth", "fail", "fail"), ("continuity.tsn", "fail", None)],
     ("fail", ["asconf.auth", "continuity.tsn"], ["continuity.tsn"])),
    ([("continuity.association", "skip", "fail")], ("fail", [], ["continuity.association"])),
])
def test_a_cell_status_follows_its_expectations(rules, want):
    assert matrix.classify(_verdict(*rules)) == want


def test_matrix_files(tmp_path):
    ks, ss = [UML, Q612], [B["default"], B["auth-off"]]
    results = [CellResult("uml", "uml", "default", "pass", report="cells/uml__uml__default/report.html"),
               CellResult("uml", "6.12", "auth-off", "fail", ["asconf.auth"], ["continuity.association"]),
               CellResult("6.12", "uml", "default", "error", error="lab up: <boom>")]
    matrix.write(tmp_path / "matrix.json", scenario="trash-handover", kernels=ks, settings=ss,
                 results=results, started=1.0, seconds=2.0, jobs=2)
    doc = json.loads((tmp_path / "matrix.json").read_text())
    assert doc["counts"] == {"pass": 1, "expected-fail": 0, "fail": 1, "error": 1}
    assert set(doc["cells"][0]) >= {"mn", "cn", "setting", "status", "failed_rules", "report"}
    html.render(tmp_path / "matrix.html", scenario="trash-handover", kernels=ks, settings=ss,
                results=results, seconds=2.0, jobs=2)
    page = (tmp_path / "matrix.html").read_text()
    assert page.count("<table>") == 2 and "href='cells/uml__uml__default/report.html'" in page
    assert "&lt;boom&gt;" in page and "not run" in page and "<code>continuity.association</code>" in page


# -- what a cell runs -------------------------------------------------------------------------
def test_cell_topology_and_scenario():
    sc = model.load("trash-handover")
    topo = cellmod.cell_topology(sc, UML, Q612, B["noauth"])
    assert topo["nodes"]["mn"]["sctp"] == {"stack": "uml", "kernel": None, "addip_enable": 1,
                                           "auth_enable": 0, "addip_noauth_enable": 1,
                                           "default_auto_asconf": 0}
    assert topo["nodes"]["cn"]["sctp"]["stack"] == "qemu" and topo["nodes"]["cn"]["sctp"]["kernel"] == "6.12"
    cs = cellmod.cell_scenario(sc, B["auto-asconf"])
    assert cs.budgets == {} and cs.expect == {"order.trash": "fail"} and cs.traffic.binding == "auto_asconf"
    assert sc.budgets and sc.traffic.binding == "trash"  # the scenario itself is unchanged
    with pytest.raises(ConfigError, match="no SCTP traffic"):
        cellmod.endpoints(None, model.load("move-ar2"))  # type: ignore[arg-type]


# -- lanes ------------------------------------------------------------------------------------
class FakeLane:
    """A lane process: reports each cell of its plan with the status the test gives it."""

    def __init__(self, argv, statuses, exit_early=False):
        plan = json.loads(Path(argv[-1]).read_text())
        self.lab = plan["lab"]
        lines = []
        for c in plan["cells"][: 1 if exit_early else None]:
            cell = Cell.from_dict(c)
            lines.append(json.dumps({"cell": cell.slug, "msg": "running"}))
            res = CellResult(cell.mn.label, cell.cn.label, cell.setting.name, statuses(cell), lab=self.lab)
            lines.append(json.dumps({"cell": cell.slug, "result": res.to_dict()}))
        self.stdout = io.StringIO("\n".join(lines) + "\nnot json\n")
        self.returncode = 1 if exit_early else 0

    def wait(self, timeout=None):
        return self.returncode

    def poll(self):
        return self.returncode


class Ui:
    """A ``MatrixUi`` that records what it was told."""

    def __init__(self):
        self.lanes: list[tuple[str, str]] = []
        self.done: list[str] = []

    def started(self, cell, lane):
        self.lanes.append((cell.slug, lane))

    def message(self, cell, text):
        pass

    def finished(self, cell, result):
        self.done.append(cell.slug)


def test_lanes_run_every_group_and_a_dead_lane_reports_errors(run_root, tmp_path):
    cells = matrix.plan([UML, Q612], [B["default"], B["auth-off"]])
    run = engine.MatrixRun(tmp_path / "s.yaml", [UML, Q612], [B["default"], B["auth-off"]], cells,
                           tmp_path / "out", "tbx", jobs=2, cpus=8)
    lanes_seen = []

    def popen(argv, **kw):
        plan = json.loads(Path(argv[-1]).read_text())
        lanes_seen.append(plan["lab"])
        dies = plan["cells"][0]["mn"]["label"] == "6.12" and plan["cells"][0]["cn"]["label"] == "uml"
        return FakeLane(argv, lambda c: "expected-fail" if c.setting.name == "auth-off" else "pass", dies)

    ui = Ui()
    results = engine.run(run, ui, popen=popen)
    want = [(c.mn.label, c.cn.label, c.setting.name) for c in cells]
    assert [(r.mn, r.cn, r.setting) for r in results] == want
    assert set(lanes_seen) == {"tbx0", "tbx1"} and len(lanes_seen) == 4
    bad = [r for r in results if r.status == "error"]
    assert [(r.mn, r.cn, r.setting) for r in bad] == [("6.12", "uml", "auth-off")]
    assert bad[0].error.startswith("lane exited 1")
    assert sorted(ui.done) == sorted(c.slug for c in cells)


def test_lanes_fill_the_cores_by_weight():
    """A QEMU node weighs a core, a UML node a quarter: on 2 cores a QEMU-QEMU lab runs
    alone, a UML-QEMU lab beside a UML-UML one but not beside another UML-QEMU lab."""
    gs = matrix.groups(matrix.plan([UML, Q612], [B["default"]]))
    qq, uq, qu, uu = gs
    assert [engine.weight(g) for g in gs] == [2.0, 1.25, 1.25, 0.5]
    assert engine.pick(gs, [], 2) is qq
    assert engine.pick([uq, qu, uu], [qq], 2) is None
    assert engine.pick([qu, uu], [uq], 2) is uu
    assert engine.pick([qq], [uu], 2) is None and engine.pick([qq], [], 1) is qq


def test_a_lab_in_the_way_stops_the_run_before_anything(run_root, tmp_path):
    LabState("tbx1", "t.yaml", {}).save()
    cells = matrix.plan([UML], [B["default"]])
    run = engine.MatrixRun(tmp_path / "s.yaml", [UML], [B["default"]], cells, tmp_path / "out", "tbx", jobs=2)
    with pytest.raises(LabStateError, match="lab 'tbx1' exists.*testbed --lab tbx1 down"):
        engine.run(run, Ui(), popen=lambda *a, **k: pytest.fail("started a lane"))


class FakeLab:
    def __init__(self, journal, name):
        self.journal, self.name = journal, name
        from testbed.model import loader

        self.topo = loader.load("two-ar-sctp")
        self.state = SimpleNamespace(lab=name)
        self.mobile = SimpleNamespace(attached=["ar1"])
        self.journal.append(("up", name))

    def set_sctp(self, node, values):
        self.journal.append(("sysctls", node, values["auth_enable"]))

    def move(self, to, mode):
        self.journal.append(("move", to))
        self.mobile.attached = [to]

    def close(self):
        pass

    def down(self):
        self.journal.append(("down", self.name))


def test_a_lane_reuses_its_lab_after_an_expected_outcome_only(run_root, tmp_path, monkeypatch):
    journal: list = []
    outcome = {"default": "pass", "noauth": "fail", "auth-off": "pass", "auto-asconf": "pass"}

    class FakeRunner:
        def __init__(self, sc, lab, out, progress, title, context):
            self.sc, self.lab, self.out = sc, lab, out
            journal.append(("run", sc.expect, context["interop"]["fresh_lab"]))

        def run(self):
            self.out.mkdir(parents=True)
            (self.out / "report.html").write_text("")
            self.lab.mobile.attached = ["ar2"]
            name = next(k for k, v in B.items() if v.expect == self.sc.expect)
            status = outcome[name]
            rules = [{"id": "asconf.auth", "status": status}]
            return SimpleNamespace(verdict=SimpleNamespace(to_dict=lambda: {"rules": rules}))

    monkeypatch.setattr(lane.Lab, "up", lambda path, name, say: FakeLab(journal, name))
    monkeypatch.setattr(lane, "Runner", FakeRunner)
    ln = lane.Lane("tbx0", model.load("trash-handover"), tmp_path / "cells", tmp_path / "labs",
                   emit=lambda ev: None)
    res = ln.run([Cell(UML, UML, B[n]) for n in ("default", "noauth", "auth-off", "auto-asconf")])
    assert [r.status for r in res] == ["pass", "fail", "pass", "pass"]
    assert [r.fresh_lab for r in res] == [True, False, True, False]
    assert journal == [
        ("up", "tbx0"), ("run", {}, True),
        ("move", "ar1"), ("sysctls", "mn", 0), ("sysctls", "cn", 0),
        ("run", {"asconf.auth": "fail"}, False),
        ("down", "tbx0"), ("up", "tbx0"), ("run", {"continuity.association": "fail"}, True),
        ("move", "ar1"), ("sysctls", "mn", 1), ("sysctls", "cn", 1),
        ("run", {"order.trash": "fail"}, False),
        ("down", "tbx0"),
    ]
    assert res[0].report == "cells/uml__uml__default/report.html"
    assert json.loads((tmp_path / "cells/uml__uml__noauth/cell.json").read_text())["status"] == "fail"


# -- usrsctp as the correspondent -------------------------------------------------------------
USR = KernelChoice("usrsctp", "usrsctp", None, "libusrsctp 0.9.5.0-2")


def test_usrsctp_is_a_column_only():
    cells = matrix.plan([UML, USR], [B["default"]])
    assert [c.slug for c in cells] == ["uml__uml__default", "uml__usrsctp__default"]
    with pytest.raises(ConfigError, match="MN is one of uml"):
        matrix.parse_only("MN=usrsctp", [UML, USR], [B["default"]])
    topo = cellmod.cell_topology(model.load("trash-handover"), UML, USR, B["noauth"])
    assert topo["nodes"]["cn"]["sctp"]["stack"] == "usrsctp"


def test_usrsctp_on_the_mobile_node_is_refused_with_the_reason(tmp_path):
    from testbed.model import loader

    data = loader.load("two-ar-sctp").model_dump(mode="json")
    data["nodes"]["mn"]["sctp"]["stack"] = "usrsctp"
    with pytest.raises(ConfigError, match="nodes.mn.sctp.stack: usrsctp is for a correspondent.*follow"):
        loader.from_dict(data, "t.yaml")


def test_usrsctp_server_takes_the_settings_as_its_sysctls(run_root, fake_backend, monkeypatch, tmp_path):
    from testbed.scenario.traffic import SctpTraffic
    from testbed.sctp.usrsctp import sysctls_from_linux
    from tests.conftest import make_fake_lab

    assert sysctls_from_linux({"addip_enable": 1, "auth_enable": 0, "addip_noauth_enable": 1,
                               "default_auto_asconf": 0}) == {"asconf_enable": 1, "auth_enable": 0,
                                                              "auto_asconf": 0}
    monkeypatch.setattr("testbed.runtimes.kernel_nodes.host_has_sctp", lambda: False)
    monkeypatch.setattr("testbed.runtimes.kernel_nodes.uml_available", lambda: True)
    path = tmp_path / "t.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cellmod.cell_topology(model.load("trash-handover"), UML, USR,
                                                         B["default"])))
    lab = make_fake_lab(fake_backend, str(path))
    lab.set_sctp("cn", B["auth-off"].values("cn"))  # recorded: a usrsctp CN has no sysctls to set
    assert lab.sctp_settings("cn").auth_enable == 0 and not lab.runtime("cn").sysctls
    argv = SctpTraffic(lab, "cn", model.Traffic(), tmp_path).server_argv("203.0.113.14")
    assert argv[1:3] == ["-m", "testbed.sctp.usrsctp"]
    assert "--sysctl=auth_enable=0" in argv and "--sysctl=asconf_enable=1" in argv
    lab.set_sctp("mn", {"auth_enable": 0})  # ... while a kernel node's are set at once
    assert lab.runtime("mn").sysctls["net.sctp.auth_enable"] == "0"
