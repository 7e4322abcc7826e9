"""Summary templates: named placeholders only, nothing evaluated."""

from __future__ import annotations

import pytest

from streams.core.rules.template import format_duration, format_number, format_value, render


def test_substitutes_named_placeholders_and_field_paths() -> None:
    text = render(
        "Brute force from {source.ip}: {value} failed logins in {window} ({@timestamp})",
        {"source.ip": "203.0.113.7", "value": 12, "window": "5m", "@timestamp": "t"},
    )
    assert text == "Brute force from 203.0.113.7: 12 failed logins in 5m (t)"


def test_vietnamese_text() -> None:
    assert render("Trạm {refDevice}: {value}", {"refDevice": "HD-AQ-017", "value": 61.256}) == (
        "Trạm HD-AQ-017: 61.26"
    )


def test_missing_or_none_values_show_as_a_question_mark() -> None:
    assert render("{a} / {b}", {"b": None}) == "? / ?"


def test_no_attribute_access() -> None:
    class Secret:
        token = "s3cret"

    values = {"a": Secret(), "a.__class__": "by key"}
    assert render("{a.__class__}", values) == "by key"
    assert render("{a.token} {a.__class__.__name__}", {"a": Secret()}) == "? ?"


@pytest.mark.parametrize("template", ["{value:.2f}", "{value!r}", "{value[0]}", "{ value }", "{}"])
def test_format_specs_conversions_and_indexing_are_plain_text(template: str) -> None:
    assert render(template, {"value": [1.5]}) == template


def test_only_the_given_mapping_is_read() -> None:
    assert render("{__builtins__} {globals}", {}) == "? ?"


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (10.0, "10"),
        (61.256, "61.26"),
        (0.123456, "0.12"),
        (2.5, "2.5"),
        (-0.001, "-0.001"),
        (0.0042, "0.0042"),
        (0.0, "0"),
        (-0.0, "0"),
        (-0.004, "-0.004"),
        (float("nan"), "NaN"),
        (float("inf"), "∞"),
        (1e20, "100000000000000000000"),
    ],
)
def test_numbers_are_compact(number: float, text: str) -> None:
    assert format_number(number) == text


def test_values_of_other_types() -> None:
    assert format_value(True) == "true"
    assert format_value(False) == "false"
    assert format_value(17) == "17"
    assert format_value(["a", 1]) == '["a",1]'
    assert format_value("{value}") == "{value}"


def test_a_value_is_not_rendered_again() -> None:
    assert render("{a}", {"a": "{b}", "b": "no"}) == "{b}"


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (500, "500ms"),
        (1500, "1s500ms"),
        (30_000, "30s"),
        (300_000, "5m"),
        (5_400_000, "1h30m"),
        (3_600_000, "1h"),
        (604_800_000, "7d"),
        (90_000_000, "1d1h"),
    ],
)
def test_format_duration(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_negative_duration_is_an_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(-1)
