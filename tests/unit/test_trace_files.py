"""Link traces: the two formats, their bad inputs (one line naming file, line and fix), the
replay plan each node gets, the metric updates' steps and rate, and the replayer's schedule."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from testbed.errors import ConfigError
from testbed.model import loader, replay, trace
from testbed.model.addressing import plan as lab_plan
from testbed.model.topology import Directions, TraceSource
from testbed.replay.link import loss_commands
from testbed.replay.replayer import schedule
from testbed.scenario import model as scenario_model

CSV = "# a comment\nseconds,rate,loss,signal\n0,8000,0,-60\n1.5,2000,,-70\n3,,5,\n"


def src(tmp_path: Path, text: str, fmt: str = "csv", name: str = "t.trace", **kw) -> TraceSource:
    p = tmp_path / name
    p.write_text(text)
    return TraceSource(trace=str(p), format=fmt, **kw)


def test_csv_rows_become_whole_steps_per_direction(tmp_path):
    tr = trace.network_trace(src(tmp_path, CSV), trace.read_file)
    assert [(s.t, s.rate_kbit, s.loss) for s in tr.down.steps] == [(0, 8000, 0), (1.5, 2000, None),
                                                                   (3, None, 5)]
    assert tr.up.steps == tr.down.steps
    assert [(p.t, p.dbm, p.line) for p in tr.signal] == [(0, -60, 3), (1.5, -70, 4)]
    assert tr.signal_at(2.0) == -70 and tr.signal_at(-1) is None


def test_csv_direction_columns_override_the_shared_one(tmp_path):
    tr = trace.network_trace(src(tmp_path, "seconds,rate,rate_up\n10,1000,200\n"), trace.read_file)
    assert tr.down.steps[0].rate_kbit == 1000 and tr.up.steps[0].rate_kbit == 200
    assert tr.down.steps[0].t == 0  # times count from the first row


def test_mahimahi_is_a_rate_per_100_ms_and_loops(tmp_path):
    # 10 opportunities in the first 100 ms, none in the second, 5 in the third; period 300 ms
    lines = ["1"] * 10 + ["250"] * 4 + ["300"]
    tr = trace.network_trace(src(tmp_path, "\n".join(lines) + "\n", "mahimahi"), trace.read_file)
    # the line at 300 ms is the next round's 0 ms: 11 opportunities in bin 0
    assert [(s.t, s.rate_kbit) for s in tr.down.steps] == [(0.0, 1320.0), (0.1, 0.0), (0.2, 480.0)]
    assert tr.down.loop_s == 0.3


def test_mahimahi_takes_one_file_per_direction(tmp_path):
    down = tmp_path / "down"
    up = tmp_path / "up"
    down.write_text("0\n100\n")
    up.write_text("0\n0\n0\n200\n")
    tr = trace.network_trace(TraceSource(trace=Directions(downlink=str(down), uplink=str(up)),
                                         format="mahimahi"), trace.read_file)
    assert tr.down.loop_s == 0.1 and tr.up.loop_s == 0.2
    assert tr.up.steps[0].rate_kbit == 480.0


@pytest.mark.parametrize("text,fmt,line,words", [
    ("seconds,rate\n0,8000\n1,abc\n", "csv", 3, "'abc' is not a number"),
    ("seconds,rate\n0,8000\n2,10\n1,20\n", "csv", 4, "goes backwards"),
    ("seconds,rate\n0,8000\n0,10\n", "csv", 3, "the same time"),
    ("seconds,loss\n0,120\n", "csv", 2, "outside 0-100 %"),
    ("seconds,loss\n0,-1\n", "csv", 2, "outside 0-100 %"),
    ("seconds,bandwidth\n0,1\n", "csv", 1, "unknown column 'bandwidth'"),
    ("seconds,rate\n0,1,2\n", "csv", 2, "3 cells for 2 columns"),
    ("12\n13\n", "csv", 1, "this is a mahimahi trace"),
    ("seconds,rate\n0,100\n", "mahimahi", 1, "this is a csv trace"),
    ("5\n3\n", "mahimahi", 2, "goes backwards"),
    ("5\n1.5\n", "mahimahi", 2, "not a time in whole milliseconds"),
    ("0\n0\n", "mahimahi", 2, "no period"),
])
def test_bad_traces_are_one_line_naming_file_line_and_fix(tmp_path, text, fmt, line, words):
    s = src(tmp_path, text, fmt)
    with pytest.raises(ConfigError) as e:
        trace.network_trace(s, trace.read_file)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path}/t.trace: line {line}: ") and words in msg
    assert e.value.fix  # each says what to do


def test_an_unreadable_trace_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the trace"):
        trace.network_trace(TraceSource(trace=str(tmp_path / "nope.csv"), format="csv"), trace.read_file)


def _topology(tmp_path: Path, replay_line: str) -> Path:
    text = loader.resolve("two-ar-mptcp").read_text().replace(
        '    ipv6: "2001:db8:a2::/64"\n', '    ipv6: "2001:db8:a2::/64"\n' + replay_line, 1)
    p = tmp_path / "topo.yaml"
    p.write_text(text)
    return p


def test_a_topology_names_a_trace_relative_to_itself_and_a_bad_one_fails_loading(tmp_path):
    (tmp_path / "ok.csv").write_text("seconds,rate\n0,1000\n")
    topo = loader.load(_topology(tmp_path, "    replay: {trace: ok.csv, format: csv}\n"))
    assert topo.access_networks[1].replay.trace == str(tmp_path / "ok.csv")
    (tmp_path / "bad.csv").write_text("seconds,rate\n0,1000\n0,2000\n")
    with pytest.raises(ConfigError, match=r"bad.csv: line 3: the same time"):
        loader.load(_topology(tmp_path, "    replay: {trace: bad.csv, format: csv}\n"))


def test_a_scenario_names_traces_per_network_and_a_bad_one_fails_loading(tmp_path):
    (tmp_path / "bad.csv").write_text("seconds,loss\n0,101\n")
    p = tmp_path / "sc.yaml"
    p.write_text("name: x\ntopology: two-ar-mptcp\nnetworks: {ar2: {trace: bad.csv, format: csv}}\n"
                 "steps: [{wait: 1}]\n")
    with pytest.raises(ConfigError, match=r"bad.csv: line 2: loss 101 is outside 0-100 %"):
        scenario_model.load(p)


def test_the_plan_shapes_the_routers_port_and_the_mns_interface_over_the_static_shape(tmp_path):
    topo = loader.load("three-ar-sctp")  # ar2: shape {rate: 1mbit}
    tr = trace.network_trace(src(tmp_path, "seconds,loss\n0,1\n2,0\n"), trace.read_file)
    plans = replay.plan(lab_plan(topo), {"ar2": tr}, lambda n: n == "mn", 1, lambda mn: f"/{mn}.sock")
    (down,) = plans["ar2"].ifaces
    (up,) = plans["mn"].ifaces
    assert (down.ifname, down.direction, down.netem, up.ifname, up.netem) == ("ar2-mn", "down", False,
                                                                              "mn-ar2", True)
    assert down.base == replay.Quality(rate_kbit=1000.0)
    assert [(c.t, c.quality.rate_kbit, c.quality.loss) for c in down.changes] == [(0, 1000, 1), (2, 1000, 0)]
    assert plans["mn"].agent_socket == "/mn.sock" and not plans["ar2"].agent_socket
    again = replay.NodeReplay.from_json(plans["mn"].to_json())
    assert again == plans["mn"]


def test_a_delay_on_a_node_without_netem_is_refused_naming_its_line(tmp_path):
    topo = loader.load("two-ar-mptcp")
    tr = trace.network_trace(src(tmp_path, "seconds,delay\n0,0\n5,40\n"), trace.read_file)
    with pytest.raises(ConfigError) as e:
        replay.check_netem({"ar2": tr}, lab_plan(topo), lambda n: False)
    assert str(e.value).startswith(f"{tmp_path}/t.trace: line 3: a delay on ar2 (ar2-mn) needs netem")
    replay.check_netem({"ar2": tr}, lab_plan(topo), lambda n: True)


def test_metrics_go_in_whole_db_at_most_ten_a_second_per_network(tmp_path):
    # a signal row every 10 ms, moving by 0.3 dB each: 100 rows a second
    rows = "\n".join(f"{i / 100:.2f},{-80 + 0.3 * i:.1f}" for i in range(300))
    tr = trace.network_trace(src(tmp_path, "seconds,signal\n" + rows + "\n"), trace.read_file)
    ups = replay.metric_updates("mn-ar2", "ar2", replay.noisy_signal(tr, 1, "ar2"), tr)
    times = [u.t for u in ups]
    assert all(b - a >= replay.METRIC_GAP_S - 1e-9 for a, b in itertools.pairwise(times))
    values = [u.values["signal"] for u in ups]
    assert all(v == int(v) for v in values)
    assert values[0] == -80 and values[-1] == round(-80 + 0.3 * 299)  # the last reading is sent
    assert len(ups) <= 3 / replay.METRIC_GAP_S + 1


def test_an_unchanged_reading_is_not_sent_and_noise_follows_the_seed(tmp_path):
    tr = trace.network_trace(src(tmp_path, "seconds,signal\n0,-60\n1,-60.2\n2,-59.9\n"), trace.read_file)
    assert [u.values for u in replay.metric_updates("i", "n", replay.noisy_signal(tr, 1, "n"), tr)] \
        == [{"signal": -60.0}]
    noisy = trace.network_trace(src(tmp_path, "seconds,signal\n0,-60\n1,-60\n2,-60\n", noise_db=3),
                                trace.read_file)
    assert replay.noisy_signal(noisy, 7, "n") == replay.noisy_signal(noisy, 7, "n")
    assert replay.noisy_signal(noisy, 7, "n") != replay.noisy_signal(noisy, 8, "n")


def test_the_schedule_merges_interfaces_and_metrics_and_loops(tmp_path):
    q = replay.Quality
    loop = replay.IfaceReplay("n", "a", "ar2", "down", False, q(), (replay.Change(0, q(100)),
                                                                     replay.Change(0.1, q(200))), 0.2)
    once = replay.IfaceReplay("n", "b", "ar2", "up", False, q(), (replay.Change(0.15, q(5)),))
    m = replay.MetricUpdate(0.05, "b", "ar2", {"signal": -50})
    got = list(itertools.islice(schedule(replay.NodeReplay("n", (loop, once), (m,), "/s")), 6))
    assert [(round(t, 3), src) for t, src, _ in got] == [(0, 0), (0.05, -1), (0.1, 0), (0.15, 1), (0.2, 0),
                                                         (0.3, 0)]


def test_loss_is_replaced_in_one_transaction_not_stacked():
    cmds = loss_commands("ar2-mn", 2.5)
    assert cmds.index("flush chain") < cmds.index("add rule") and cmds.count("add rule") == 1
    assert "numgen random mod 10000 < 250 drop" in cmds
    assert "add rule" not in loss_commands("ar2-mn", 0)


def test_a_scenarios_trace_goes_over_the_topologys_and_names_a_known_router(tmp_path):
    from testbed.lab.replay import sources

    mine, theirs = (TraceSource(trace=f"/{n}.csv", format="csv") for n in ("mine", "theirs"))
    assert sources({"ar1": None, "ar2": theirs}, {"ar2": mine}, "s") == {"ar2": mine}
    assert sources({"ar1": theirs, "ar2": None}, {}, "s") == {"ar1": theirs}
    with pytest.raises(ConfigError, match=r"^s: networks\.ar9: 'ar9' serves no access network"):
        sources({"ar1": None}, {"ar9": mine}, "s")


def test_a_topology_trace_with_a_delay_on_a_node_without_netem_fails_the_build_before_anything(
        tmp_path, run_root, fake_backend, monkeypatch):
    from testbed.lab import Lab, shaping

    monkeypatch.setattr(shaping, "host_has_netem", lambda: False)
    (tmp_path / "d.csv").write_text("seconds,delay\n0,10\n")
    topo = _topology(tmp_path, "    replay: {trace: d.csv, format: csv}\n")
    with pytest.raises(ConfigError, match=r"d.csv: line 2: a delay on ar2 \(ar2-mn\) needs netem"):
        Lab.up(topo, "tbtr", backend="fake")
    assert fake_backend.built == [] and ("backend", "build") not in fake_backend.journal  # nothing made
