"""A mobility agent on a detector fed by hand: the agent's socket, fan-out and state without
root, for the agent's tests and for those of the processes that follow it."""

from __future__ import annotations

import asyncio
from typing import Any

from testbed.mobility.detection.core import DetectionCore
from testbed.mobility.detection.detector import DetectorOptions, EventSink, MovementDetector
from testbed.mobility.detection.observations import Observation, Stamp


class HandFedDetector:
    """Stands in for MovementDetector: same core, observations come from the test."""

    def __init__(self, sink: EventSink, opts: DetectorOptions) -> None:
        self.core = DetectionCore(opts.ifaces)
        self.sink = sink
        self.ready = asyncio.Event()

    async def run(self) -> None:
        self.ready.set()
        await asyncio.Event().wait()

    def feed(self, obs: Observation) -> None:
        self.sink(self.core.observe(obs, Stamp.now()))

    def set_metric(self, ifname: str, name: str, value: float) -> None:
        self.sink(self.core.set_metric(ifname, name, value, Stamp.now()))

    def set_metrics(self, ifname: str, values: dict[str, float]) -> None:
        self.sink(self.core.set_metrics(ifname, values, Stamp.now()))

    def shutdown(self, reason: str = "sigterm") -> None:
        self.sink(self.core.shutdown(Stamp.now(), reason))

    def snapshot(self) -> dict[str, Any]:
        return self.core.snapshot()


def factory(sink: EventSink, opts: DetectorOptions) -> MovementDetector:
    return HandFedDetector(sink, opts)  # type: ignore[return-value]
