"""Link traces: how an access network's quality and signal change over a run (pure, no I/O).

Two formats, named with the file (``format:``), never guessed:

- ``csv``: a header naming the columns, then one row per change. ``seconds`` (from the first
  row) comes first; any of ``rate`` (kbit/s), ``delay`` (ms), ``loss`` (%) may follow, for both
  directions, or per direction as ``rate_down``/``rate_up`` (and so on); ``signal`` (dBm) is the
  network's. An empty cell, or an absent column, keeps what the link had. ``#`` starts a comment.
- ``mahimahi``: one line per 1500-byte delivery opportunity, its time in ms; a time may repeat
  (several packets in that millisecond); the file loops with the period of its last line. It
  is replayed as a rate per ``MAHIMAHI_BIN_S`` (one file per direction).

Downlink is the access router's port toward the MN, uplink the MN's own interface there (as
``model.shaping`` places a network's static shape). Bad input is a ``ConfigError`` naming the
file, the line and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from testbed.errors import ConfigError
from testbed.model.topology import TraceSource

MAHIMAHI_BIN_S = 0.1  # a mahimahi trace's opportunities are replayed as the rate of each 100 ms
MAHIMAHI_PACKET_BITS = 1500 * 8
QUALITY = ("rate", "delay", "loss")
COLUMNS = ("seconds", "signal", *QUALITY, *(f"{q}_{d}" for q in QUALITY for d in ("down", "up")))
CSV_HEADER = "seconds,rate,delay,loss,signal"


@dataclass(frozen=True)
class Step:
    """One direction's quality from ``t`` on; None keeps what the link had."""

    t: float
    line: int
    rate_kbit: float | None = None
    delay_ms: float | None = None
    loss: float | None = None


@dataclass(frozen=True)
class Series:
    """One direction of one network: its steps in time order, looping every ``loop_s`` when set."""

    source: str
    steps: tuple[Step, ...]
    loop_s: float | None = None

    @property
    def has_delay(self) -> bool:
        return any(s.delay_ms for s in self.steps)

    def first_delay(self) -> Step | None:
        return next((s for s in self.steps if s.delay_ms), None)


@dataclass(frozen=True)
class SignalPoint:
    t: float
    dbm: float
    line: int


@dataclass(frozen=True)
class NetworkTrace:
    """What one access network replays: both directions and its signal."""

    down: Series
    up: Series
    signal: tuple[SignalPoint, ...] = ()
    noise_db: float = 0.0

    def signal_at(self, t: float) -> float | None:
        """The file's (noise-free) signal at ``t``: the last row at or before it."""
        v = None
        for p in self.signal:
            if p.t > t:
                break
            v = p.dbm
        return v


# ---------------------------------------------------------------------------- parsing
def _looks_mahimahi(line: str) -> bool:
    return line.strip().isdigit()


def _looks_csv(line: str) -> bool:
    return "," in line or line.strip().split(",")[0].strip() == "seconds"


def parse_csv(text: str, source: str) -> tuple[Series, Series, tuple[SignalPoint, ...]]:
    """A csv trace: its downlink and uplink series and its signal."""
    rows = [(n, ln.split("#", 1)[0].strip()) for n, ln in enumerate(text.splitlines(), 1)]
    rows = [(n, ln) for n, ln in rows if ln]
    if not rows:
        raise ConfigError(source, "line 1", "the csv trace has no rows",
                          f"write a header ({CSV_HEADER}) and one row per change")
    hn, header = rows[0]
    if _looks_mahimahi(header):
        raise ConfigError(source, f"line {hn}", "this is a mahimahi trace (one delivery time in ms "
                          "per line), not csv", "give format: mahimahi, or write a csv header "
                          f"({CSV_HEADER})")
    cols = [c.strip() for c in header.split(",")]
    bad = [c for c in cols if c not in COLUMNS]
    if bad or cols[0] != "seconds" or len(set(cols)) != len(cols):
        what = (f"unknown column {bad[0]!r}" if bad else "seconds must be the first column"
                if cols[0] != "seconds" else "a column is named twice")
        raise ConfigError(source, f"line {hn}", f"csv header: {what}",
                          f"name the columns from {', '.join(COLUMNS)}, seconds first, e.g. {CSV_HEADER}")
    if len(rows) < 2:
        raise ConfigError(source, f"line {hn}", "the csv trace has a header but no rows",
                          "add one row per change under the header")
    down: list[Step] = []
    up: list[Step] = []
    signal: list[SignalPoint] = []
    last_t: float | None = None
    for n, ln in rows[1:]:
        cells = [c.strip() for c in ln.split(",")]
        if len(cells) != len(cols):
            raise ConfigError(source, f"line {n}", f"{len(cells)} cells for {len(cols)} columns "
                              f"({', '.join(cols)})", "give every row one cell per column (an empty "
                              "cell keeps the previous value)")
        vals: dict[str, float] = {}
        for col, cell in zip(cols, cells, strict=True):
            if cell == "":
                continue
            try:
                v = float(cell)
            except ValueError:
                raise ConfigError(source, f"line {n}", f"{col} {cell!r} is not a number",
                                  f"write {col} as a number ({_unit(col)})") from None
            if not math.isfinite(v):
                raise ConfigError(source, f"line {n}", f"{col} {cell!r} is not finite",
                                  f"write {col} as a number ({_unit(col)})")
            _check_value(col, v, source, n)
            vals[col] = v
        if "seconds" not in vals:
            raise ConfigError(source, f"line {n}", "the row has no time", "give every row its seconds")
        t = vals["seconds"]
        if last_t is not None and t <= last_t:
            what = "the same time as the row before" if t == last_t else \
                f"time {t:g} s goes backwards (the row before is at {last_t:g} s)"
            raise ConfigError(source, f"line {n}", what,
                              "give each row a later time than the one before (one row per change)")
        last_t = t
        for direction, out in (("down", down), ("up", up)):
            q = {k: vals.get(f"{k}_{direction}", vals.get(k)) for k in QUALITY}
            out.append(Step(t, n, q["rate"], q["delay"], q["loss"]))
        if "signal" in vals:
            signal.append(SignalPoint(t, vals["signal"], n))
    t0 = down[0].t  # times count from the first row

    def shift(s: Step) -> Step:
        return Step(s.t - t0, s.line, s.rate_kbit, s.delay_ms, s.loss)

    return (Series(source, tuple(shift(s) for s in down)), Series(source, tuple(shift(s) for s in up)),
            tuple(SignalPoint(p.t - t0, p.dbm, p.line) for p in signal))


def _unit(col: str) -> str:
    base = col.split("_")[0]
    return {"seconds": "seconds", "rate": "kbit/s", "delay": "ms", "loss": "percent, 0-100",
            "signal": "dBm"}[base]


def _check_value(col: str, v: float, source: str, n: int) -> None:
    base = col.split("_")[0]
    if base == "loss" and not 0 <= v <= 100:
        raise ConfigError(source, f"line {n}", f"{col} {v:g} is outside 0-100 %",
                          "write loss as a percentage between 0 and 100")
    if base in ("rate", "delay", "seconds") and v < 0:
        raise ConfigError(source, f"line {n}", f"{col} {v:g} is negative",
                          f"write {col} as a number >= 0 ({_unit(col)}; rate 0 drops every packet)")
    if base == "signal" and not -200 <= v <= 50:
        raise ConfigError(source, f"line {n}", f"signal {v:g} dBm is not a radio's signal",
                          "write the signal in dBm, between -200 and 50")


def parse_mahimahi(text: str, source: str) -> Series:
    """A mahimahi trace: its delivery opportunities as a rate per ``MAHIMAHI_BIN_S``."""
    times: list[int] = []
    last = -1
    for n, raw in enumerate(text.splitlines(), 1):
        ln = raw.strip()
        if not ln:
            continue
        if not ln.isdigit():
            if not times and _looks_csv(ln):
                raise ConfigError(source, f"line {n}", "this is a csv trace (a header with columns), "
                                  "not mahimahi", "give format: csv")
            raise ConfigError(source, f"line {n}", f"{ln[:30]!r} is not a time in whole milliseconds",
                              "write one delivery opportunity per line, as an integer ms")
        ms = int(ln)
        if ms < last:
            raise ConfigError(source, f"line {n}", f"time {ms} ms goes backwards (the line before "
                              f"is at {last} ms)", "keep the times in order (a time may repeat: "
                              "several packets in that millisecond)")
        last = ms
        times.append(ms)
    if not times:
        raise ConfigError(source, "line 1", "the mahimahi trace is empty",
                          "write one delivery opportunity per line, as an integer ms")
    period_ms = times[-1]
    if period_ms <= 0:
        raise ConfigError(source, f"line {len(text.splitlines())}", "the trace's last time is 0 ms, "
                          "so it has no period to loop on", "end the trace at its period (> 0 ms)")
    bin_ms = round(MAHIMAHI_BIN_S * 1000)
    nbins = math.ceil(period_ms / bin_ms)
    counts = [0] * nbins
    for ms in times:
        # mahimahi's loop: an opportunity at the period is the next loop's time 0
        counts[(ms % period_ms) // bin_ms] += 1
    steps = []
    prev: float | None = None
    for i, c in enumerate(counts):
        width = min(bin_ms, period_ms - i * bin_ms) / 1000
        rate = round(c * MAHIMAHI_PACKET_BITS / width / 1000, 3)
        if rate != prev:
            steps.append(Step(i * bin_ms / 1000, 0, rate_kbit=rate))
            prev = rate
    return Series(source, tuple(steps), loop_s=period_ms / 1000)


def network_trace(spec: TraceSource, read) -> NetworkTrace:
    """Parse ``spec``'s files; ``read(path) -> str`` does the reading (ConfigError when it cannot)."""
    files = spec.files()
    if spec.format == "csv":
        if files["down"] == files["up"]:
            down, up, signal = parse_csv(read(files["down"]), files["down"])
        else:
            down, _, signal = parse_csv(read(files["down"]), files["down"])
            _, up, signal_up = parse_csv(read(files["up"]), files["up"])
            signal = signal or signal_up
        return NetworkTrace(down, up, signal, spec.noise_db)
    down = parse_mahimahi(read(files["down"]), files["down"])
    up = down if files["up"] == files["down"] else parse_mahimahi(read(files["up"]), files["up"])
    if spec.noise_db:
        raise ConfigError(files["down"], "line 1", "noise_db adds noise to a signal, and a mahimahi "
                          "trace has none", "drop noise_db, or give the signal in a csv trace")
    return NetworkTrace(down, up)


def read_file(path: str) -> str:
    """A trace file's text, or one line saying why it cannot be read."""
    from pathlib import Path

    try:
        return Path(path).read_text()
    except OSError as e:
        raise ConfigError(path, "-", f"cannot read the trace: {e.strerror}",
                          "give a path relative to the file naming it, or an absolute one") from e
    except UnicodeDecodeError:
        raise ConfigError(path, "line 1", "the trace is not text", "give a csv or mahimahi text "
                          "file") from None
