"""sinks/lineprotocol.py: layout, escaping, field types, bounded labels."""

from __future__ import annotations

from typing import Any

import pytest

from models.errors import EncodeError
from sinks.lineprotocol import (
    BOUNDED_LABELS,
    encode,
    escape_key,
    escape_measurement,
    escape_string,
    is_integer_statistic,
    is_unbounded,
    safe_name,
    unbounded_labels,
)

T = 1795662000000


def record(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "identity": f"air_station_5m|HD-AQ-017|TP Hải Dương|{T}",
        "aggregate": "air_station_5m",
        "family": "city",
        "group": {"refDevice": "HD-AQ-017", "areaServed": "TP Hải Dương"},
        "window_start": "2026-11-26T03:00:00Z",
        "window_end": "2026-11-26T03:05:00Z",
        "window_start_ms": T,
        "window_end_ms": T + 300_000,
        "count": 5,
        "final": True,
        "statistics": {"count": 5, "pm25_count": 5, "pm25_mean": 61.2, "pm25_max": 70.1},
    }
    value.update(changes)
    return value


def line(**changes: Any) -> str:
    encoded = encode(record(**changes))
    assert encoded is not None
    return encoded.decode()


def test_the_documented_example() -> None:
    assert line() == (
        "ioc_aggregate,aggregate=air_station_5m,areaServed=TP\\ Hải\\ Dương,refDevice=HD-AQ-017"
        f" count=5i,pm25_count=5i,pm25_mean=61.2,pm25_max=70.1 {T}"
    )


def test_running_update_is_the_same_point_as_its_final() -> None:
    running = line(final=False, statistics={"count": 3, "pm25_mean": 60.0})
    final = line()
    assert running.rsplit(" ", 1)[1] == final.rsplit(" ", 1)[1] == str(T)
    assert running.split(" ", 1)[0] == final.split(" ", 1)[0]


# -- escaping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("a b", "a\\ b"),
        ("a,b", "a\\,b"),
        ("a=b", "a\\=b"),
        ("a\\b", "a\\\\b"),
        ("ends\\", "ends\\\\"),
        ('quote"d', 'quote"d'),
        ("line\nbreak", "line\\ break"),
        ("crlf\r\nx", "crlf\\ x"),
        ("cr\rx", "cr\\ x"),
        ("TP Hải Dương", "TP\\ Hải\\ Dương"),
        (" ,=\\", "\\ \\,\\=\\\\"),
        ("#hash", "#hash"),
    ],
)
def test_escape_key(raw: str, escaped: str) -> None:
    assert escape_key(raw) == escaped


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("m", "m"),
        ("a b", "a\\ b"),
        ("a,b", "a\\,b"),
        ("a=b", "a=b"),  # `=` needs no escape in a measurement
        ("a\nb", "a\\ b"),
    ],
)
def test_escape_measurement(raw: str, escaped: str) -> None:
    assert escape_measurement(raw) == escaped


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("moderate", '"moderate"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("a, b=c", '"a, b=c"'),  # commas, spaces and `=` are fine inside quotes
        ("Trung bình", '"Trung bình"'),
        ("two\nlines", '"two lines"'),
        ("", '""'),
    ],
)
def test_escape_string(raw: str, escaped: str) -> None:
    assert escape_string(raw) == escaped


def test_long_strings_are_cut_to_64_kib_on_a_character_boundary() -> None:
    text = "ư" * 40_000  # two bytes each
    escaped = escape_string(text)
    assert len(escaped[1:-1].encode()) <= 64 * 1024
    assert escaped[1:-1] == "ư" * (32 * 1024)


def test_tag_values_with_every_special_character() -> None:
    got = line(
        group={"refDevice": "A,B=C D\\", "areaServed": 'Quận "1"\nmới'},
        statistics={"count": 1},
    )
    assert got == (
        'ioc_aggregate,aggregate=air_station_5m,areaServed=Quận\\ "1"\\ mới,'
        f"refDevice=A\\,B\\=C\\ D\\\\ count=1i {T}"
    )


def test_tags_are_sorted_and_keys_made_prometheus_compatible() -> None:
    got = line(
        aggregate="security_events_by_category_5m",
        group={"organization.name": "SO-TTTT", "event.category": "authentication"},
        statistics={"count": 4},
    )
    assert got == (
        "ioc_aggregate,aggregate=security_events_by_category_5m,event_category=authentication,"
        f"organization_name=SO-TTTT count=4i {T}"
    )


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("pm25_mean", "pm25_mean"),
        ("source.ip_distinct", "source_ip_distinct"),
        ("organization.name", "organization_name"),
        ("a b,c=d", "a_b_c_d"),
        ("_private", "x_private"),
        ("9lives", "x9lives"),
        ("", "x"),
        ("Hải", "H_i"),
    ],
)
def test_safe_name(name: str, safe: str) -> None:
    assert safe_name(name) == safe


# -- field types --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "integer"),
    [
        ("count", True),
        ("pm25_count", True),
        ("user_name_distinct", True),
        ("open", True),
        ("overdue", True),
        ("near_due", True),
        ("aqi", True),
        ("aqi_pm25", True),
        ("pm25_mean", False),
        ("pm25_max", False),
        ("intensity_sum", False),
        ("currentLevel_last", False),
        ("nowcast_pm25", False),
        ("on_time_mean", False),
        ("pm25_p95", False),
    ],
)
def test_integer_statistics(name: str, integer: bool) -> None:
    assert is_integer_statistic(name) is integer


@pytest.mark.parametrize(
    ("statistics", "fields"),
    [
        ({"count": 5}, "count=5i"),
        ({"count": 5.0}, "count=5i"),  # a whole float under a count name: still an integer
        ({"pm25_max": 70}, "pm25_max=70.0"),  # whole numbers under a float name: floats
        ({"pm25_max": 70.1}, "pm25_max=70.1"),
        ({"pm25_max": -0.5}, "pm25_max=-0.5"),
        ({"pm25_mean": 1e-05}, "pm25_mean=1e-05"),
        ({"pm25_mean": 1e20}, "pm25_mean=1e+20"),
        ({"pm25_mean": 0.1 + 0.2}, "pm25_mean=0.30000000000000004"),  # round-trips
        ({"pm25_mean": None, "pm25_count": 0}, "pm25_count=0i"),  # null: left out
        ({"pm25_mean": float("nan"), "count": 1}, "count=1i"),
        ({"pm25_mean": float("inf"), "count": 1}, "count=1i"),
        ({"flag_last": True}, "flag_last=true"),
        ({"flag_last": False}, "flag_last=false"),
        ({"count": 2**63 - 1}, f"count={2**63 - 1}i"),
        ({"band": "moderate"}, 'band="moderate"'),
        ({"source.ip_distinct": 3}, "source_ip_distinct=3i"),
    ],
)
def test_field_values(statistics: dict[str, Any], fields: str) -> None:
    # `count` is in statistics, or the record's count would be added
    statistics = statistics if "count" in statistics else {"count": 1, **statistics}
    got = line(statistics=statistics).split(" ")
    assert got[-2] == fields if fields.startswith("count") else got[-2] == f"count=1i,{fields}"


def test_records_count_is_written_when_statistics_have_none() -> None:
    got = line(count=58, statistics={"aqi": 82, "nowcast_pm25": 41.22, "aqi_so2": None})
    assert got.split(" ")[-2] == "count=58i,aqi=82i,nowcast_pm25=41.22"


def test_text_statistics_are_left_out_without_string_fields() -> None:
    statistics = {"aqi": 82, "band": "moderate", "band_vi": "Trung bình", "dominant": "pm25"}
    with_text = encode(record(statistics=statistics))
    without = encode(record(statistics=statistics), string_fields=False)
    assert with_text is not None and without is not None
    assert with_text.decode().endswith(
        f'aqi=82i,band="moderate",band_vi="Trung bình",dominant="pm25" {T}'
    )
    assert without.decode().split(" ")[-2] == "count=5i,aqi=82i"


@pytest.mark.parametrize(
    "statistics",
    [
        {"count": 2.5},
        {"pm25_count": 0.5},
        {"count": 2**63},
        {"pm25_mean": 10**400},
        {"pm25_mean": [1, 2]},
        {"pm25_mean": {"a": 1}},
    ],
)
def test_bad_statistics_are_encode_errors(statistics: dict[str, Any]) -> None:
    with pytest.raises(EncodeError):
        encode(record(statistics=statistics))


@pytest.mark.parametrize(
    "changes",
    [
        {"aggregate": None},
        {"aggregate": ""},
        {"group": ["a"]},
        {"statistics": None},
        {"window_start_ms": "1795662000000"},
        {"window_start_ms": 1.5},
        {"window_start_ms": True},
        {"group": {"refDevice": ["a", "b"]}},
    ],
)
def test_malformed_records_are_encode_errors(changes: dict[str, Any]) -> None:
    with pytest.raises(EncodeError):
        encode(record(**changes))


@pytest.mark.parametrize("missing", ["aggregate", "group", "window_start_ms", "statistics"])
def test_missing_keys_are_encode_errors(missing: str) -> None:
    value = record()
    del value[missing]
    with pytest.raises(EncodeError, match=missing):
        encode(value)


def test_nothing_to_write_is_none() -> None:
    assert encode(record(count=None, statistics={"pm25_mean": None})) is None


# -- tags ---------------------------------------------------------------------------------


def test_global_group_has_only_the_aggregate_tag() -> None:
    assert line(group={}, statistics={"count": 1}) == (
        f"ioc_aggregate,aggregate=air_station_5m count=1i {T}"
    )


def test_non_string_group_values_are_written_as_json_text() -> None:
    got = line(
        aggregate="case_backlog",
        group={"agency": "SO-TNMT", "kind": "dossier", "partition": 2},
        statistics={"open": 41, "overdue": 3, "near_due": 7},
        count=41,
    )
    assert got == (
        "ioc_aggregate,agency=SO-TNMT,aggregate=case_backlog,kind=dossier,partition=2"
        f" count=41i,open=41i,overdue=3i,near_due=7i {T}"
    )


@pytest.mark.parametrize("empty", [None, "", "  "])
def test_null_or_empty_group_values_are_left_out(empty: Any) -> None:
    got = line(group={"refDevice": "HD-AQ-017", "areaServed": empty}, statistics={"count": 1})
    assert got == f"ioc_aggregate,aggregate=air_station_5m,refDevice=HD-AQ-017 count=1i {T}"


@pytest.mark.parametrize(
    "label",
    [
        "source.ip",
        "destination.ip",
        "client.address",
        "user.name",
        "user.id",
        "host.name",
        "file.hash.sha256",
        "dossier_id",
        "event.id",
        "id",
        "url.full",
        "source.port",
    ],
)
def test_unbounded_labels_keep_the_record_out(label: str) -> None:
    assert is_unbounded(label)
    value = record(group={"organization.name": "SO-TTTT", label: "x"})
    assert unbounded_labels(value["group"]) == [label]
    assert encode(value) is None
    # …even when the caller puts it on the allow-list
    assert encode(value, allowed=BOUNDED_LABELS | {label}) is None


def test_labels_not_on_the_allow_list_keep_the_record_out_unless_allowed() -> None:
    value = record(group={"agency": "SO-TNMT", "procedure_code": "1.004227"})
    assert encode(value) is None
    allowed = encode(value, allowed=BOUNDED_LABELS | {"procedure_code"})
    assert allowed is not None and b",procedure_code=1.004227 " in allowed


def test_the_allow_list_is_bounded_by_its_own_rule() -> None:
    assert not [label for label in BOUNDED_LABELS if is_unbounded(label)]


def test_default_pack_groups_are_all_written() -> None:
    from pathlib import Path

    from models.aggregates import load_aggregates

    pack = Path(__file__).parents[3] / "models" / "packs" / "aggregates.yaml"
    for aggregate in load_aggregates(pack):
        assert unbounded_labels(aggregate.group_by) == [], aggregate.name
