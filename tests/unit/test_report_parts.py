"""Report building blocks: role lookup, the SVG renderer on its own."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from testbed.errors import ConfigError
from testbed.report import Arrow, Note, RoleMap, render_ladder_svg
from testbed.report.svg import COLOURS, NOTE_STEP

SVG = "{http://www.w3.org/2000/svg}"


def test_roles_host_beats_prefix_and_prefer_breaks_ties() -> None:
    rm = RoleMap.build(
        {
            "MN": ["198.51.100.0/24", "2001:db8:a2::/64", "192.0.2.10/24"],
            "New AR": ["198.51.100.1", "fe80::a2%eth0"],
            "DHCP": ["198.51.100.1"],
        }
    )
    assert rm.resolve("198.51.100.1") == "New AR"
    assert rm.resolve("198.51.100.1", prefer=("DHCP",)) == "DHCP"
    assert rm.resolve("198.51.100.77") == "MN"
    assert rm.resolve("192.0.2.10") == "MN"  # interface notation names the host
    assert rm.resolve("192.0.2.11") is None
    assert rm.resolve("fe80::a2") == "New AR"
    assert rm.resolve("not an address") is None
    assert rm.hosts_in("198.51.100.0/24") == ["New AR", "DHCP"]
    with pytest.raises(ConfigError, match="not an address"):
        RoleMap.build({"CN": ["cn.example"]})


def _msg(t: float, src: str, dst: str, label: str, **kw: object) -> Arrow:
    return Arrow(t, src, dst, label, "detail <b>", "x.pcap", 3, **kw)  # type: ignore[arg-type]


def test_svg_is_xml_with_escaped_text_gap_rows_and_notes() -> None:
    msgs = [
        _msg(10.0, "A", "B", 'ASCONF <ADD_IP> & "x"'),
        _msg(10.002, "B", "A", "ACK", reply=True, error=True),
        _msg(12.5, "A", "A", "self"),
        _msg(14.0, "A", "Nowhere", "dropped: role not a column"),
    ]
    notes = [Note(9.9, "A", "link_up <eth1>"), Note(11.0, "A", "move → ar2", NOTE_STEP)]
    svg = ET.fromstring(render_ladder_svg(msgs, ["A", "B"], notes=notes, headers={"A": "192.0.2.1"}))
    texts = ["".join(t.itertext()) for t in svg.iter(f"{SVG}text")]
    assert 'ASCONF <ADD_IP> & "x"' in texts
    assert "link_up <eth1>" in texts and "move → ar2" in texts
    assert "-100.0 ms" in texts and "2.0 ms" in texts and "2500.0 ms" in texts
    assert not any("dropped" in t for t in texts)
    gaps = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "gap"]
    assert ["".join(g.itertext()).strip("~ ") for g in gaps] == ["0.998 s later", "1.500 s later"]
    ack = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "msg"][1]
    line = next(ack.iter(f"{SVG}line"))
    assert line.get("stroke") == COLOURS["error"] and line.get("stroke-dasharray")
    title = next(ack.iter(f"{SVG}title")).text or ""
    assert "detail <b>" in title and "x.pcap frame 3" in title
