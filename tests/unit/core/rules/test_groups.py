"""A missing group field is the group `unknown`: the event still counts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from streams.core.rules.plan import (
    MAX_GROUP_VALUE_CHARS,
    UNKNOWN,
    AggregateRoute,
    RuleInput,
    group_function,
)
from streams.worker.stages.rules import route_table
from tests.unit.core.rules.test_engine import AGGREGATES, RULES, T0, engine, feed, validated


def flood(**changes: Any) -> dict[str, Any]:
    event = {
        "id": "urn:ngsi-ld:FloodMonitoring:HD-FL-003:1",
        "type": "FloodMonitoring",
        "refDevice": "HD-FL-003",
        "observationDateTime": T0.isoformat(),
        "location": {"type": "Point", "coordinates": [106.3146, 20.9399]},
        "currentLevel": 9.0,
        "dangerLevel": 5.0,
    }
    event.update(changes)
    return {key: value for key, value in event.items() if value is not None}


def test_a_flood_reading_without_area_served_fires_under_unknown():
    reading = validated("city", flood())
    assert "areaServed" not in reading
    made = engine()
    alerts = [a for a in feed(made, "city", [reading]) if a.rule == "water_above_danger_level"]
    [alert] = alerts
    assert alert.state == "firing"
    assert alert.labels["refDevice"] == "HD-FL-003"
    assert alert.labels["areaServed"] == UNKNOWN
    assert "(unknown)" in alert.annotations["summary_en"]


def test_the_router_keys_a_missing_group_field_as_unknown():
    reading = validated("city", flood())
    table = route_table(RULES, AGGREGATES)
    inputs = table.event_inputs("city", reading)
    [item] = [i for i in inputs if i.rule == "water_above_danger_level"]
    assert item.group == ("HD-FL-003", UNKNOWN)
    assert item.key == b'water_above_danger_level|["HD-FL-003","unknown"]'
    # Through the wire and back: the same group, so the same partition and alert.
    assert RuleInput.from_json(item.to_json()).group == item.group


def test_group_values_of_each_shape():
    one = group_function(("source.ip",))
    assert one({"source": {"ip": "10.0.0.1"}}) == [("10.0.0.1",)]
    assert one({}) == [(UNKNOWN,)]
    assert one({"source": None}) == [(UNKNOWN,)]
    assert one({"source": {"ip": {"nested": 1}}}) == [(UNKNOWN,)]
    assert one({"source": {"ip": []}}) == [(UNKNOWN,)]
    assert one({"source": {"ip": ["a", "a", None, "b"]}}) == [("a",), ("b",)]
    two = group_function(("a", "b"))
    assert two({"a": 1}) == [(1, UNKNOWN)]
    assert two({"a": ["x", "y"], "b": "z"}) == [("x", "z"), ("y", "z")]
    assert group_function(())({}) == [()]


def test_an_aggregate_final_without_a_kept_label_is_unknown():
    [rule] = [r for r in RULES if r.name == "overdue_backlog"]
    route = AggregateRoute(rule, ("agency", "kind", "partition"))
    record = {
        "identity": "x", "aggregate": "case_backlog", "final": True,
        "group": {"kind": "dossier", "partition": 0},
        "window_start_ms": 0, "window_end_ms": 60_000, "count": 3,
        "statistics": {"open": 3, "overdue": 3, "near_due": 0},
    }  # fmt: skip
    [item] = route.inputs(record)
    assert item.group == (UNKNOWN, "dossier")


def test_later_readings_of_the_unknown_group_resolve_it():
    made = engine()
    feed(made, "city", [validated("city", flood())])
    later = flood(currentLevel=2.0, observationDateTime=(T0 + timedelta(minutes=5)).isoformat())
    alerts = [
        a for a in feed(made, "city", [validated("city", later)])
        if a.rule == "water_above_danger_level"
    ]  # fmt: skip
    assert [(a.state, a.labels["areaServed"]) for a in alerts] == [("resolved", UNKNOWN)]


def test_a_huge_group_value_is_shortened_but_stays_its_own_group():
    huge, other = "A" * 530_000, "A" * 529_999 + "B"
    one = group_function(("refDevice",))
    [(short,)] = one({"refDevice": huge})
    [(short_other,)] = one({"refDevice": other})
    assert len(short) <= MAX_GROUP_VALUE_CHARS and short.startswith("AAAA")
    assert short != short_other
    assert one({"refDevice": huge}) == [(short,)]  # the same every time
    assert one({"refDevice": [huge, huge]}) == [(short,)]
    assert group_function(("a", "b"))({"a": huge, "b": "x"}) == [(short, "x")]
