"""Routing and evaluation together, with the default packs: events in, alerts out."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from models.alerts import Alert
from models.rulefile import default_rules
from streams.core.ingest import process_message
from streams.core.progress import NEVER, Frontier
from streams.core.rules.engine import LateInput, RuleEngine
from streams.core.rules.plan import RuleInput
from streams.core.windows import default_aggregates
from streams.worker.settings import IngestSettings
from streams.worker.stages.rules import route_table, summing_rules
from tests.conftest import NOW, air_quality, auth_failure

AGGREGATES = default_aggregates()
RULES = default_rules(AGGREGATES)
T0 = NOW - timedelta(hours=1)
S = 1000


def validated(family: str, event: dict[str, Any]) -> dict[str, Any]:
    result = process_message(family, orjson.dumps(event), IngestSettings(), NOW)
    assert result.accepted, result.rejected
    return orjson.loads(result.accepted[0].value)  # type: ignore[no-any-return]


def failure(at: datetime, n: int, ip: str = "203.0.113.7", user: str = "admin") -> dict:
    event = auth_failure(**{"@timestamp": at.isoformat(), "source": {"ip": ip}})
    event["user"] = {"name": user}
    event["event"] = {**event["event"], "id": f"e{n}"}
    return validated("security", event)


def engine() -> RuleEngine:
    summing = summing_rules(RULES, AGGREGATES)
    return RuleEngine(RULES, summing, allowed_lateness_ms=0, idle_timeout_ms=5 * S)


def feed(made: RuleEngine, family: str, events: list[dict], now_ms: int = 0) -> list[Alert]:
    table = route_table(RULES, AGGREGATES)
    out: list[Alert] = []
    for event in events:
        for item in table.event_inputs(family, event):
            out += made.process(RuleInput.from_json(item.to_json()), now_ms)
    return out


def test_brute_force_fires_on_the_tenth_failure_and_resolves_after_keep_firing_for():
    made = engine()
    nine = [failure(T0 + timedelta(seconds=i), i) for i in range(9)]
    assert feed(made, "security", nine) == []
    [alert] = feed(made, "security", [failure(T0 + timedelta(seconds=9), 9)])
    assert (alert.rule, alert.state, alert.labels["source.ip"]) == (
        "brute_force", "firing", "203.0.113.7",
    )  # fmt: skip
    assert alert.starts_at_ms == int((T0 + timedelta(seconds=9)).timestamp() * 1000)
    assert alert.evidence.count == 10 and len(alert.evidence.event_ids) == 10
    assert alert.annotations["summary_en"] == (
        "Brute force from 203.0.113.7: 10 failed logins in 5m"
    )
    assert alert.annotations["summary_vi"].startswith("Dò mật khẩu từ 203.0.113.7")
    # More failures: the same alert, not written again.
    assert feed(made, "security", [failure(T0 + timedelta(seconds=10), 10)]) == []
    # Another source 20 minutes later moves event time on: the window (5m) has emptied
    # and keep_firing_for (5m) has run out.
    feed(made, "security", [failure(T0 + timedelta(minutes=20), 99, ip="198.51.100.1")])
    [resolved] = made.advance(0)
    assert (resolved.rule, resolved.state) == ("brute_force", "resolved")
    assert resolved.fingerprint == alert.fingerprint
    # 11 failures at 0…10 s: fewer than 10 in the window once the one at 1 s leaves it
    # (301 s), then keep_firing_for (300 s).
    assert resolved.ends_at_ms == int((T0 + timedelta(seconds=601)).timestamp() * 1000)


def test_sensor_silence_fires_by_the_wall_clock_when_the_partition_is_idle():
    made = engine()
    reading = air_quality(refDevice="HD-AQ-002", dateObserved=T0.isoformat())
    assert feed(made, "city", [validated("city", reading)], now_ms=0) == []
    assert made.advance(5 * S) == []  # not idle yet
    # Idle: event time runs on with the wall clock from the last reading.
    alerts = made.advance(5 * S + 15 * 60 * S + 2)
    assert [(a.rule, a.state, a.labels["refDevice"]) for a in alerts] == [
        ("sensor_silent", "firing", "HD-AQ-002")
    ]
    # It speaks again: resolved.
    later = air_quality(
        refDevice="HD-AQ-002", dateObserved=(T0 + timedelta(minutes=20)).isoformat()
    )
    [resolved] = feed(made, "city", [validated("city", later)], now_ms=16 * 60 * S)
    assert (resolved.rule, resolved.state) == ("sensor_silent", "resolved")


def backlog(partition: int, overdue: int, at_ms: int) -> dict:
    return {
        "identity": f"case_backlog|SO-TNMT|dossier|{partition}|{at_ms}",
        "aggregate": "case_backlog", "family": "services", "final": True,
        "group": {"agency": "SO-TNMT", "kind": "dossier", "partition": partition},
        "window_start_ms": at_ms, "window_end_ms": at_ms, "count": overdue,
        "statistics": {"open": overdue, "overdue": overdue, "near_due": 0},
    }  # fmt: skip


def test_an_agencys_overdue_backlog_is_summed_over_partitions():
    made = engine()
    table = route_table(RULES, AGGREGATES)
    alerts: list[Alert] = []
    for record in [backlog(0, 6, 60 * S), backlog(1, 4, 60 * S), backlog(2, 1, 60 * S)]:
        for item in table.aggregate_inputs(record):
            alerts += made.process(item, 0)
    [alert] = alerts  # 6 + 4 + 1 = 11 > 10, only once all three are in
    assert (alert.rule, alert.labels["agency"], alert.evidence.value) == (
        "overdue_backlog", "SO-TNMT", 11.0,
    )  # fmt: skip
    resolved: list[Alert] = []
    for item in table.aggregate_inputs(backlog(0, 1, 120 * S)):  # 1 + 4 + 1 = 6 < 8
        resolved += made.process(item, 0)
    assert [(a.rule, a.state) for a in resolved] == [("overdue_backlog", "resolved")]


def test_running_updates_feed_no_rule():
    table = route_table(RULES, AGGREGATES)
    record = {**backlog(0, 50, 60 * S), "final": False}
    assert table.aggregate_inputs(record) == []


@pytest.mark.parametrize("split", [3, 9, 12])
def test_a_restored_engine_goes_on_as_if_never_stopped(split):
    events = [failure(T0 + timedelta(seconds=i), i, user=f"u{i}") for i in range(14)]
    events.append(failure(T0 + timedelta(minutes=30), 50, ip="198.51.100.1"))
    straight = engine()
    expected = feed(straight, "security", events) + straight.advance(0)

    first = engine()
    got = feed(first, "security", events[:split])
    second = engine()
    assert second.restore(first.take_dirty()) == []
    got += feed(second, "security", events[split:]) + second.advance(0)
    assert [a.to_json() for a in got] == [a.to_json() for a in expected]
    assert {a.rule for a in expected} == {"brute_force", "password_spraying"}


def test_state_of_a_rule_no_longer_configured_is_reported_stale():
    made = engine()
    feed(made, "security", [failure(T0, 1)])
    saved = made.take_dirty()
    without = RuleEngine([r for r in RULES if r.name != "brute_force"])
    # The rule's own record and its groups' records.
    assert sorted(without.restore(saved)) == ["brute_force", 'brute_force/["203.0.113.7"]']


# -- each rule's own event time, from its sources' progress ------------------------------


def progress_of(feed: str, frontier: datetime, idle: bool = False, source: str = "") -> Frontier:
    millis = int(frontier.timestamp() * 1000)
    return Frontier(source or f"ioc.{feed}.validated:0", "events", feed, millis, idle)


def test_a_security_backlog_neither_holds_back_city_rules_nor_is_late_for_them():
    made = engine()
    made.observe_progress([progress_of("city", NOW), progress_of("security", T0)])
    made.advance(0)
    assert made.watermark("sensor_silent") == int(NOW.timestamp() * 1000)
    assert made.watermark("brute_force") == int(T0.timestamp() * 1000)
    # Security events an hour older than the city's progress are on time for their rules;
    # they wait for their turn until the security progress passes them.
    ten = [failure(T0 + timedelta(seconds=i), i) for i in range(10)]
    assert feed(made, "security", ten) == []
    assert made.pending > 0
    made.observe_progress([progress_of("security", T0 + timedelta(seconds=9))])
    [alert] = [a for a in made.advance(0) if a.rule == "brute_force"]
    assert alert.state == "firing"


def test_an_input_older_than_its_rules_watermark_is_returned_late():
    made = engine()
    made.observe_progress([progress_of("security", T0 + timedelta(minutes=10))])
    made.advance(0)
    [item] = route_table(RULES, AGGREGATES).event_inputs("security", failure(T0, 0))[:1]
    late = made.process(RuleInput.from_json(item.to_json()), 0)
    assert isinstance(late, LateInput) and late.rule == item.rule
    assert late.watermark_ms == int((T0 + timedelta(minutes=10)).timestamp() * 1000)


def test_an_absence_waits_for_the_progress_of_its_own_sources():
    made = engine()
    made.observe_progress([
        progress_of("city", T0, source="ioc.city.validated:0"),
        progress_of("city", T0, source="ioc.city.validated:1"),
    ])  # fmt: skip
    made.advance(0)
    reading = validated("city", air_quality(dateObserved=T0.isoformat()))
    feed(made, "city", [reading])
    # One city partition is two hours further on; the other catches up a backlog.
    made.observe_progress(
        [progress_of("city", T0 + timedelta(hours=2), source="ioc.city.validated:0")]
    )
    assert [a for a in made.advance(0) if a.rule == "sensor_silent"] == []
    made.observe_progress(
        [progress_of("city", T0 + timedelta(hours=2), source="ioc.city.validated:1")]
    )
    assert [a.rule for a in made.advance(0) if a.state == "pending" or a.state == "firing"].count(
        "sensor_silent"
    ) >= 1


def test_clocks_and_sources_survive_a_checkpoint():
    made = engine()
    made.observe_progress([progress_of("security", T0)])
    made.advance(0)
    state = dict(made.take_dirty())
    restored = engine()
    restored.restore(state.items())  # type: ignore[arg-type]
    assert restored.watermark("brute_force") == made.watermark("brute_force")
    assert restored.progress.sources == made.progress.sources


# -- inputs judged in event-time order ---------------------------------------------------


def attack(seed: int) -> list[dict]:
    """Failures from three addresses, some bursts crossing brute force's threshold."""
    rng = random.Random(seed)
    out = []
    for n in range(60):
        at = T0 + timedelta(seconds=rng.randrange(0, 900))
        ip = f"203.0.113.{rng.randrange(1, 4)}"
        out.append(failure(at, n, ip=ip, user=f"u{rng.randrange(0, 8)}"))
    return out


def following(made: RuleEngine, upto: datetime) -> list[Alert]:
    made.observe_progress([progress_of("security", upto), progress_of("city", upto)])
    return made.advance(0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_rule_following_progress_judges_inputs_in_event_time_order(seed):
    events = attack(seed)
    in_order = engine()
    following(in_order, T0)
    expected = feed(in_order, "security", sorted(events, key=lambda e: e["@timestamp"]))
    expected += following(in_order, T0 + timedelta(hours=1))
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    made = engine()
    following(made, T0)
    # The progress between the two halves passes part of the first, none of the second.
    second_half_from = min(datetime.fromisoformat(e["@timestamp"]) for e in shuffled[30:])
    got = feed(made, "security", shuffled[:30])
    got += following(made, second_half_from - timedelta(seconds=1))
    got += feed(made, "security", shuffled[30:]) + following(made, T0 + timedelta(hours=1))
    assert {a.rule for a in expected} >= {"brute_force"}
    assert [a.to_json() for a in got] == [a.to_json() for a in expected]


def test_inputs_pending_at_a_checkpoint_are_read_again_and_only_they():
    events = sorted(attack(4), key=lambda e: e["@timestamp"])
    table = route_table(RULES, AGGREGATES)
    items = [
        RuleInput.from_json(i.to_json()) for e in events for i in table.event_inputs("security", e)
    ]
    straight = engine()
    following(straight, T0)
    for item in items:
        straight.process(item, 0)
    expected = following(straight, T0 + timedelta(minutes=5))
    expected += following(straight, T0 + timedelta(hours=1))

    first = engine()
    following(first, T0)
    half = len(items) // 2
    for offset, item in enumerate(items[:half]):
        first.process(item, 0, offset)
    got = following(first, T0 + timedelta(minutes=5))  # some applied, the rest pending
    assert 0 < first.pending < half
    second = engine()
    second.restore(first.take_dirty(half))
    assert second.resume_from == min(first.pending_offsets)
    for offset, item in enumerate(items):
        if offset >= second.resume_from and not second.skip(offset):
            second.process(item, 0, offset)
    assert sum(not second.skip(o) for o in range(second.resume_from, half)) == first.pending
    got += following(second, T0 + timedelta(hours=1))
    assert [a.to_json() for a in got] == [a.to_json() for a in expected]


def test_past_its_pending_limit_a_partition_applies_the_oldest_at_once():
    made = RuleEngine(RULES, allowed_lateness_ms=0, max_pending=3)
    following(made, T0)
    feed(made, "security", [failure(T0 + timedelta(seconds=i), i) for i in range(4)])
    assert made.pending == 3 and made.overflowed > 0


def test_inputs_read_after_the_first_progress_wait_even_before_an_advance():
    made = engine()
    # A router announces its partitions (NEVER) before it routes anything.
    made.observe_progress(
        [Frontier("ioc.security.validated:0", "events", "security", NEVER, False)]
    )
    assert feed(made, "security", [failure(T0 + timedelta(seconds=i), i) for i in range(10)]) == []
    assert made.pending > 0


def test_an_input_replayed_while_its_original_waits_counts_once():
    events = [failure(T0 + timedelta(seconds=i), i) for i in range(10)]
    once, twice = engine(), engine()
    following(once, T0)
    following(twice, T0)
    expected = feed(once, "security", events) + following(once, T0 + timedelta(minutes=1))
    got = feed(twice, "security", events + events[5:]) + following(twice, T0 + timedelta(minutes=1))
    assert [a.to_json() for a in got] == [a.to_json() for a in expected]
    assert twice.replayed > 0 and twice.pending == once.pending == 0
