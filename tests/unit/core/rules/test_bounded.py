"""Absence groups are bounded: forgotten after `forget_after`, evicted past a limit."""

from __future__ import annotations

import random
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from models.errors import RuleConfigError
from models.rulefile import load_rules
from models.rules import DEFAULT_FORGET_AFTER_MS
from streams.core.rules.detectors import AbsenceDetector, DistinctDetector
from streams.core.rules.engine import RuleEngine, group_key
from streams.core.rules.plan import RuleInput
from streams.worker.stages.rules import summing_rules
from tests.unit.core.rules.test_engine import AGGREGATES, RULES, T0, engine, following

MS = int(T0.timestamp() * 1000)
MINUTE = 60_000
HOUR = 60 * MINUTE


def reading(device: int, at_ms: int) -> RuleInput:
    return RuleInput("sensor_silent", (f"HD-AQ-{device:05d}",), at_ms, None, f"r{device}-{at_ms}")


def test_a_silent_group_is_forgotten_after_forget_after_with_its_absence_ended():
    detector = AbsenceDetector(15 * MINUTE, forget_after_ms=HOUR)
    assert detector.observe(("a",), 0) is None
    [fired] = detector.advance(15 * MINUTE + 1)
    assert fired.active and fired.at_ms == 15 * MINUTE + 1
    assert detector.advance(HOUR - 1) == []
    [ended] = detector.advance(HOUR)
    assert (ended.active, ended.at_ms, ended.group) == (False, HOUR, ("a",))
    assert len(detector) == 0 and detector.forgotten == 1
    # Heard again later: a new group, remembered afresh.
    detector.observe(("a",), 2 * HOUR)
    assert len(detector) == 1


def test_a_group_heard_now_and_then_is_never_forgotten():
    detector = AbsenceDetector(15 * MINUTE, forget_after_ms=HOUR)
    for at in range(0, 10 * HOUR, 50 * MINUTE):  # silent 50 min each time: fires, resolves
        detector.observe(("a",), at)
        detector.advance(at + 49 * MINUTE)
    assert len(detector) == 1 and detector.forgotten == 0


def test_the_default_pack_forgets_a_silent_sensor_after_three_days_and_resolves_it():
    assert DEFAULT_FORGET_AFTER_MS == 3 * 24 * HOUR
    made = engine()
    following(made, T0)
    made.process(reading(1, MS), 0)
    made.take_dirty(0)
    alerts = following(made, T0 + timedelta(days=3, minutes=1))
    silent = [(a.state, a.starts_at_ms, a.ends_at_ms) for a in alerts if a.rule == "sensor_silent"]
    assert silent == [
        ("firing", MS + 15 * MINUTE + 1, None),
        ("resolved", MS + 15 * MINUTE + 1, MS + DEFAULT_FORGET_AFTER_MS),
    ]
    assert made.group_counts()["sensor_silent"] == 0
    assert made.take_forgotten() == {("sensor_silent", "forget_after"): 1}
    assert made.take_forgotten() == {}
    # The lifecycle remembers it for the flapping guard's window (30 min), then its
    # record is deleted.
    following(made, T0 + timedelta(days=3, minutes=31))
    assert dict(made.take_dirty(0))[group_key("sensor_silent", ("HD-AQ-00001",))] is None


def test_forgetting_follows_event_time_not_the_order_it_was_read_in():
    """Live (progress, pending heap) and `ioc backtest` (no progress, drained) agree."""
    live = engine()
    following(live, T0)
    got = []
    for device in range(5):
        got += live.process(reading(device, MS + device * HOUR), 0)
    got += following(live, T0 + timedelta(days=4))
    recording = engine()
    expected = []
    for device in range(5):
        expected += recording.process(reading(device, MS + device * HOUR), 0)
    expected += recording.process(reading(99, MS + 4 * 24 * HOUR), 0)
    expected += recording.advance(0) + recording.drain()
    silent = [a.to_json() for a in got if a.rule == "sensor_silent"]
    assert len(silent) == 10  # five fired, five forgotten
    assert silent == [a.to_json() for a in expected if a.rule == "sensor_silent"][:10]


def limited(max_groups: int) -> RuleEngine:
    return RuleEngine(
        RULES, summing_rules(RULES, AGGREGATES), allowed_lateness_ms=0, max_groups=max_groups
    )


def test_past_max_groups_the_least_recently_heard_are_evicted_and_their_alerts_resolved():
    made = limited(100)
    following(made, T0)
    for device in range(100):
        made.process(reading(device, MS + device), 0)
    fired = following(made, T0 + timedelta(minutes=20))
    assert sum(a.rule == "sensor_silent" and a.state == "firing" for a in fired) == 100
    out = []
    for device in range(100, 103):
        out += made.process(reading(device, MS + 20 * MINUTE + device), 0)
    out += following(made, T0 + timedelta(minutes=21))
    # One hundredth of the limit at a time: the first to pass it evicts the oldest one.
    resolved = [a for a in out if a.rule == "sensor_silent" and a.state == "resolved"]
    assert [a.labels["refDevice"] for a in resolved] == [
        "HD-AQ-00000",
        "HD-AQ-00001",
        "HD-AQ-00002",
    ]
    assert made.group_counts()["sensor_silent"] == 100
    assert made.take_forgotten() == {("sensor_silent", "max_groups"): 3}
    assert made.evaluators["sensor_silent"].lifecycle.firing_by_severity() == {"warning": 97}


def test_eviction_picks_the_same_groups_after_a_restore():
    def story(made: RuleEngine, devices: range, upto_minutes: int) -> list[bytes]:
        """Three devices at each minute (ties broken by the group), then time passes."""
        out = []
        for device in devices:
            out += made.process(reading(device, MS + (device // 3) * MINUTE), 0)
        upto = T0 + timedelta(minutes=upto_minutes)
        return [a.to_json() for a in out + following(made, upto)]

    straight, first = limited(50), limited(50)
    following(straight, T0)
    following(first, T0)
    expected = story(straight, range(60), 20) + story(straight, range(60, 120), 60)
    got = story(first, range(60), 20)
    second = limited(50)
    second.restore(first.take_dirty(0))
    got += story(second, range(60, 120), 60)
    assert got == expected
    assert sum(b'"resolved"' in alert for alert in got) > 0


def test_absent_groups_of_a_checkpoint_from_before_forgetting_get_their_deadline():
    older = AbsenceDetector(15 * MINUTE)
    older.observe(("a",), 0)
    older.advance(16 * MINUTE)
    newer = AbsenceDetector(15 * MINUTE, forget_after_ms=HOUR)
    newer.restore(older.snapshot())
    [ended] = newer.advance(HOUR)
    assert not ended.active and len(newer) == 0


def test_forget_after_must_be_longer_than_after(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        textwrap.dedent("""\
        rules:
          - name: quiet
            kind: absence
            family: city
            group_by: [refDevice]
            after: 2h
            forget_after: 1h
            summary: {vi: "{refDevice}", en: "{refDevice}"}
        """)
    )
    with pytest.raises(RuleConfigError) as caught:
        load_rules(path, AGGREGATES)
    [problem] = caught.value.problems
    assert problem.endswith("rule 'quiet': forget_after: must be longer than after")


# -- distinct: the newest values only ----------------------------------------------------


def test_a_distinct_group_keeps_its_newest_values_only_and_judges_exactly():
    rng = random.Random(7)
    capped = DistinctDetector(60_000, 20, slack=5)
    exact = DistinctDetector(60_000, 20, slack=1_000_000)
    changes: dict[str, list[tuple[bool, int]]] = {"capped": [], "exact": []}
    for n in range(20_000):
        # Bursts a window apart, each event up to 3 s out of order.
        at = n * 10 + (n // 2_000) * 70_000 - rng.randrange(0, 3_000)
        user = f"u{rng.randrange(0, 36_000)}"
        for name, detector in (("capped", capped), ("exact", exact)):
            for observation in detector.advance(at - 5_000):
                changes[name].append((observation.active, observation.at_ms))
            observation = detector.observe(("203.0.113.7",), at, user, f"e{n}")
            if observation is not None:
                changes[name].append((observation.active, observation.at_ms))
        assert len(capped.group_state(("203.0.113.7",))[2][3]) <= 25
    for name, detector in (("capped", capped), ("exact", exact)):
        changes[name] += [(o.active, o.at_ms) for o in detector.advance(10**9)]
    assert changes["capped"] == changes["exact"]
    assert len(changes["exact"]) >= 20  # on and off with each burst
