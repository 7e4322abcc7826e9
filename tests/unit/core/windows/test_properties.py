"""The engine against a brute-force reference, on random streams.

Streams mix several partitions and keys, event times out of order within and beyond
allowed lateness and grace, wall-clock gaps long enough for idle partitions, running
updates, and (at a random point) a take_dirty/restore round trip into a fresh engine.
Every test runs with both stores (`make_engine`): dicts, and RocksDB behind a cache so
small that nearly every access goes to disk.

The reference replays only the watermark rule to decide, per event and window, whether
the window was still open when the event came; then it computes each window's figures
directly from the events it holds. Values are multiples of 1/4, so sums are exact in
any order and every statistic but the percentiles must match exactly; percentiles must
be within ALPHA (relative) of the exact lower percentile.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.aggregates import PERCENTILES, Aggregate
from models.results import WindowResult
from streams.core.windows import ALPHA, LateEvent, WindowEngine
from tests.unit.core.windows.events import SECURITY, T0, S, aggregate, air, security

LATENESS = 2 * S
IDLE = 20 * S
ALL = ["count", "sum", "min", "max", "mean", "last", "distinct", "p50", "p90", "p99"]

AGGREGATES = [
    aggregate(
        name="device_tumbling", values=["pm25", "temperature"], statistics=ALL,
        window={"size": "10s", "grace": "3s"}, emit={"running_every": "3s"},
    ),
    aggregate(
        name="area_hopping", group_by=["areaServed"],
        filter={"type": "AirQualityObserved", "pm25": {"lt": 40}},
        values=["pm25"], statistics=ALL, window={"size": "15s", "step": "5s", "grace": "1s"},
    ),
    aggregate(
        name="global_offset", group_by=[], values=["temperature"],
        statistics=["count", "sum", "last"], window={"size": "7s", "offset": "2s"},
    ),
    aggregate(
        name="categories", family="security", filter={}, group_by=["event.category"],
        values=["user.name"], statistics=["count", "distinct", "last"],
        window={"size": "10s", "step": "5s"},
    ),
]  # fmt: skip


# -- the reference -----------------------------------------------------------------------


def groups(spec: Aggregate, event: dict[str, Any]) -> list[Any] | None:
    """The event's group keys, None when a group field is absent (skipped)."""
    if spec.family == "security":
        return list(dict.fromkeys(event["event"]["category"]))
    if not spec.group_by:
        return [None]
    value = event.get(spec.group_by[0])
    return None if value is None else [value]


def matches(spec: Aggregate, event: dict[str, Any]) -> bool:
    if spec.family == "security":
        return "@timestamp" in event
    if "dateObserved" not in event:
        return False
    return spec.name != "area_hopping" or ("pm25" in event and event["pm25"] < 40)


def value(spec: Aggregate, event: dict[str, Any], field: str) -> Any:
    return event.get("user", {}).get("name") if field == "user.name" else event.get(field)


def starts(spec: Aggregate, t: int) -> list[int]:
    """Starts of the windows holding t."""
    hop, size, offset = spec.window.hop, spec.window.size, spec.window.offset
    last = t - (t - offset) % hop
    return [last - k * hop for k in range(size // hop)]


def figures(spec: Aggregate, held: list[tuple[int, int, dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {"count": len(held)}
    for field in spec.values:
        found = [(t, seq, value(spec, e, field)) for t, seq, e in held]
        values = [v for _, _, v in found if v is not None]
        if "count" in spec.statistics:
            out[f"{field}_count"] = len(values)
        for stat in spec.statistics:
            key = f"{field}_{stat}"
            if stat == "count":
                continue
            if stat == "distinct":
                out[key] = len(set(values))
            elif not values:
                out[key] = None
            elif stat == "sum":
                out[key] = sum(values)
            elif stat == "mean":
                out[key] = sum(values) / len(values)
            elif stat == "min":
                out[key] = min(values)
            elif stat == "max":
                out[key] = max(values)
            elif stat == "last":
                out[key] = max((t, seq, v) for t, seq, v in found if v is not None)[2]
            else:
                ordered = sorted(values)
                out[key] = ordered[math.floor(PERCENTILES[stat] * (len(values) - 1))]
    return out


@dataclass
class Reference:
    finals: list[tuple[str, dict[str, Any]]]
    late: list[tuple[str, tuple, int, int]]


def reference(ops: list[tuple]) -> Reference:
    watermark: dict[str, int] = {}
    active: dict[str, tuple[int, int]] = {}  # partition → (wall clock, watermark then)
    held: dict[tuple[str, str, Any, int], list] = defaultdict(list)
    late = []
    for seq, op in enumerate(ops):
        if op[0] == "advance":
            now = op[1]
            for partition, (when, mark) in active.items():
                if now - when - IDLE > 0:
                    watermark[partition] = max(watermark[partition], mark + now - when - IDLE)
            continue
        _, partition, event, t, now = op
        mark = watermark.get(partition, -(10**18))
        for spec in AGGREGATES:
            if not matches(spec, event) or (keys := groups(spec, event)) is None:
                continue
            open_ = [s for s in starts(spec, t) if s + spec.window.size + spec.window.grace > mark]
            if not open_:
                late += [
                    (spec.name, (key,) if spec.group_by else (), starts(spec, t)[0], t)
                    for key in keys
                ]
                continue
            for key in keys:
                for start in open_:
                    held[partition, spec.name, key, start].append((t, seq, event))
        watermark[partition] = max(mark, t - LATENESS)
        active[partition] = (now, watermark[partition])
    specs = {spec.name: spec for spec in AGGREGATES}
    finals = []
    for (_, name, key, start), events in held.items():
        spec = specs[name]
        group = {spec.group_by[0]: key} if spec.group_by else {}
        identity = WindowResult(name, spec.family, group, start, 0, {}, 0, True).identity
        finals.append((identity, figures(spec, events)))
    return Reference(finals, late)


# -- the comparison ----------------------------------------------------------------------


def exact(stats: dict[str, Any]) -> tuple:
    return tuple(
        sorted((k, repr(v)) for k, v in stats.items() if k.rsplit("_", 1)[-1] not in PERCENTILES)
    )


def assert_same_finals(got: list[WindowResult], expected: list[tuple[str, dict[str, Any]]]) -> None:
    # The same group may have a window on several partitions: compare per identity,
    # as multisets, matched on the exact statistics.
    by_identity: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in got:
        assert result.count == result.statistics["count"]
        by_identity[result.identity].append(result.statistics)
    wanted: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for identity, stats in expected:
        wanted[identity].append(stats)
    assert set(by_identity) == set(wanted)
    for identity, mine in by_identity.items():
        theirs = sorted(wanted[identity], key=exact)
        mine = sorted(mine, key=exact)
        assert [exact(s) for s in mine] == [exact(s) for s in theirs], identity
        for ours, truth in zip(mine, theirs, strict=True):
            for key, true_value in truth.items():
                if key.rsplit("_", 1)[-1] in PERCENTILES and true_value is not None:
                    assert (
                        abs(ours[key] - true_value) <= ALPHA * abs(true_value) * (1 + 1e-9) + 1e-9
                    )


# -- the streams -------------------------------------------------------------------------

JITTER = [0, 0, 0, -500, -1500, -3 * S, -6 * S, -15 * S, 700]  # event time vs. the clock
TICKS = [0, 0, 250, 1000, 1000, 2000, 3000, 1234]  # coarse: equal event times happen
WALL_STEPS = [0, 0, 100, 1000, 5000, 25_000]  # beyond IDLE now and then


def event(rng: random.Random, t: int) -> tuple[str, dict[str, Any]]:
    if rng.random() < 0.2:
        categories = rng.choices(["authentication", "iam", "web"], k=rng.randint(1, 3))
        return SECURITY, security(t, categories, user={"name": rng.choice(["an", "binh", "cuong"])})
    device = rng.randrange(5)
    pm25 = None if rng.random() < 0.2 else rng.randint(-40, 400) / 4
    event = air(t, device=f"AQ-{device}", pm25=pm25, areaServed=rng.choice(["Nam Sách", "Gia Lộc"]))
    if rng.random() < 0.5:
        event["temperature"] = rng.randint(-40, 400) / 4
    # Keys live on partitions as Kafka would put them; areas and the global group span them.
    return f"ioc.city.validated:{device % 2}", event


@st.composite
def streams(draw: st.DrawFn) -> list[tuple]:
    """Operations: ("event", partition, event, t, now), ("advance", now), ("checkpoint",)
    (take_dirty into the changelog) or ("restart",) (a fresh engine from the changelog).

    Hypothesis draws the shape (length, disorder, restart point, a seed); the operations
    come from a seeded generator: drawing each field through Hypothesis made examples
    (and shrinking a failure) ten times slower, for no better coverage.
    """
    size = draw(st.integers(0, 150))
    block = draw(st.integers(1, 6))
    restart = draw(st.none() | st.integers(0, size))
    rng = random.Random(draw(st.integers(0, 2**32)))
    clock = T0
    timed: list[tuple[str, int]] = []
    for _ in range(size):
        clock += rng.choice(TICKS)
        kind = rng.choices(["event", "advance", "checkpoint"], [8, 1, 1])[0]
        timed.append((kind, clock + rng.choice(JITTER)))
    # Shuffled in small blocks: more disorder than the jitter alone gives.
    for i in range(0, size, block):
        part = timed[i : i + block]
        rng.shuffle(part)
        timed[i : i + block] = part
    ops: list[tuple] = []
    now = 0  # the wall clock only moves on
    for kind, t in timed:
        now += rng.choice(WALL_STEPS)
        if kind == "event":
            ops.append(("event", *event(rng, t), t, now))
        else:
            ops.append((kind, now) if kind == "advance" else (kind,))
    if restart is not None:
        ops.insert(restart, ("restart",))
    ops.append(("advance", now + 10**12))  # closes everything left
    return ops


@settings(
    max_examples=300,
    deadline=None,
    # make_engine holds no state between examples; the engines it makes are closed here.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=streams())
def test_engine_matches_the_brute_force_reference(make_engine, ops):
    engines: list[WindowEngine] = []

    def fresh() -> WindowEngine:
        engines.append(make_engine(AGGREGATES, allowed_lateness_ms=LATENESS, idle_timeout_ms=IDLE))
        return engines[-1]

    try:
        check_against_the_reference(fresh, ops)
    finally:
        for engine in engines:
            engine.close()


def check_against_the_reference(fresh: Callable[[], WindowEngine], ops: list[tuple]) -> None:
    engine = fresh()
    changelog: dict[str, dict[str, bytes | None]] = defaultdict(dict)
    finals: list[WindowResult] = []
    late: list[tuple] = []

    def collect(outputs: list) -> None:
        for output in outputs:
            if isinstance(output, LateEvent):
                late.append(
                    (
                        output.aggregate,
                        (*output.group.values(),),
                        output.window_start,
                        output.event_time,
                    )
                )
            elif output.final:
                finals.append(output)

    def checkpoint() -> None:
        for partition in engine.partitions:
            changelog[partition].update(engine.take_dirty(partition))

    for op in ops:
        if op[0] == "event":
            _, partition, event, _, now = op
            collect(engine.process(partition, event, now))
        elif op[0] == "advance":
            collect(engine.advance(op[1]))
        elif op[0] == "checkpoint":
            checkpoint()
        else:  # a crash right after a checkpoint: a fresh engine from the changelog
            checkpoint()
            open_before = engine.open_windows()
            engine.close()
            engine = fresh()
            for partition, items in changelog.items():
                engine.restore(partition, items.items())
            assert engine.open_windows() == open_before

    assert engine.open_windows() == 0 and engine.state_entries() == 0
    events_only = [op for op in ops if op[0] in ("event", "advance")]
    expected = reference(events_only)
    assert sorted(late, key=repr) == sorted(expected.late, key=repr)
    assert_same_finals(finals, expected.finals)


def test_the_reference_agrees_on_a_hand_made_case():
    ops = [
        ("event", "p", air(T0 + 1 * S, pm25=1.0, temperature=5.0), T0 + 1 * S, 0),
        ("event", "p", air(T0 + 15 * S, pm25=2.0), T0 + 15 * S, 0),  # watermark T0 + 13 s
        ("event", "p", air(T0 + 2 * S, pm25=3.0), T0 + 2 * S, 0),  # device window closed
        ("advance", 10**12),
    ]
    expected = reference(ops)
    assert ("device_tumbling", ("AQ-1",), T0, T0 + 2 * S) in expected.late
    device = {identity: stats for identity, stats in expected.finals if identity.startswith("dev")}
    assert device[f"device_tumbling|AQ-1|{T0}"]["pm25_sum"] == 1.0
