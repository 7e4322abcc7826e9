"""Routing and evaluation together, with the default packs: events in, alerts out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from models.alerts import Alert
from models.rulefile import default_rules
from streams.core.ingest import process_message
from streams.core.rules.engine import RuleEngine
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
    assert without.restore(saved) == ["brute_force"]
