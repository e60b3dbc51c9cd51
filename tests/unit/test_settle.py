"""A mobile node's binding updates done: the agent's state matching the attachments and the
binding process past its last event, as the lab and a deployed MN both ask."""

from __future__ import annotations

import json

from testbed.host.jsonlines import CommandServer
from testbed.mobility import protocol, settle


def _state(seq=5, **ifaces):
    return {"seq": seq, "interfaces": {i: {"link": link, "networks": [{"configured": conf}]}
                                       for i, (link, conf) in ifaces.items()}}


def test_settled_wants_the_attached_up_and_configured_the_rest_down_and_every_event_acted_on():
    st = _state(**{"mn-ar1": ("up", True), "mn-ar2": ("down", False)})
    assert settle.settled(st, ["mn-ar1"], ["mn-ar2"], 5)
    assert not settle.settled(st, ["mn-ar1"], ["mn-ar2"], 4)  # an event not acted on yet
    assert not settle.settled(st, ["mn-ar1"], ["mn-ar2"], None)  # the binding process is silent
    assert not settle.settled(st, ["mn-ar2"], ["mn-ar1"], 5)  # the other way round
    unconfigured = _state(**{"mn-ar1": ("up", False)})
    assert not settle.settled(unconfigured, ["mn-ar1"], [], 5)


def test_wait_ends_when_it_holds_and_says_false_when_time_runs_out():
    st = _state(**{"mn-ar1": ("up", True)})
    seen = iter([3, 4, 5, 5])
    assert settle.wait(lambda: st, lambda: next(seen), ["mn-ar1"], [], 5.0)
    assert not settle.wait(lambda: st, lambda: 1, ["mn-ar1"], [], 0.1)


def test_the_command_asks_the_binding_process_on_its_socket(tmp_path, capsys):
    """As on a deployed MN: the agent's state file and the binding process's status socket."""
    sock = tmp_path / "binding.sock"
    (tmp_path / "state.json").write_text(json.dumps(_state(seq=2, **{"mn-ar2": ("up", True)})))

    def answer(req):
        assert isinstance(protocol.decode_command(req), protocol.Status)
        return protocol.encode(protocol.State("ESTABLISHED", detail={"seen": 2}))

    server = CommandServer(sock, answer)
    try:
        assert settle.main(["--state", str(tmp_path / "state.json"), "--socket", str(sock),
                            "--up", "mn-ar2", "--down", "mn-ar1", "--timeout", "5"]) == 0
    finally:
        server.close()
    assert json.loads(capsys.readouterr().out)["done"] is True
