"""Aggregates as data: the YAML format, its error messages, and the result record."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from models.aggregates import Aggregate, load_aggregates
from models.errors import AggregateConfigError
from streams.core.windows import DEFAULT_PACK, WindowEngine

GOOD = """\
aggregates:
  - name: air_station_5m
    family: city
    filter: {type: AirQualityObserved}
    group_by: [refDevice]
    values: [pm25]
    statistics: [count, mean]
    window: {size: 5m}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aggregates.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(AggregateConfigError) as caught:
        load_aggregates(path)
    return caught.value.problems


def only_problem(tmp_path: Path, text: str) -> str:
    [problem] = problems(tmp_path, text)
    return problem


def test_the_default_pack_loads_and_compiles():
    aggregates = load_aggregates(DEFAULT_PACK)
    names = {aggregate.name for aggregate in aggregates}
    assert {"air_station_5m", "water_level_rise_15m", "auth_failures_5m"} <= names
    assert {aggregate.family for aggregate in aggregates} == {"city", "services", "security"}
    for family in ("city", "services", "security"):
        WindowEngine([a for a in aggregates if a.family == family])


def test_a_good_file_loads_with_durations_in_ms(tmp_path):
    [aggregate] = load_aggregates(write(tmp_path, GOOD))
    assert aggregate.window.size == 300_000 and aggregate.window.hop == 300_000
    assert aggregate.window.grace == 0 and aggregate.emit.running_every is None
    assert aggregate.filter["type"].eq == "AirQualityObserved"


def test_wrong_field_name_names_file_line_aggregate_and_field(tmp_path):
    path = write(tmp_path, GOOD.replace("values: [pm25]", "values: [pm2_5]"))
    with pytest.raises(AggregateConfigError) as caught:
        load_aggregates(path)
    assert str(caught.value) == (
        f"{path}:6: aggregate 'air_station_5m': values[0]: unknown field 'pm2_5' for "
        "AirQualityObserved events; did you mean 'pm25'?"
    )


def test_a_pinned_type_limits_fields_to_its_model(tmp_path):
    text = GOOD.replace("AirQualityObserved", "FloodMonitoring")
    assert only_problem(tmp_path, text).endswith(
        ":6: aggregate 'air_station_5m': values[0]: unknown field 'pm25' for FloodMonitoring events"
    )
    # Without the pin, any city model's field will do.
    text = GOOD.replace("    filter: {type: AirQualityObserved}\n", "").replace(
        "pm25", "currentLevel"
    )
    assert load_aggregates(write(tmp_path, text))[0].values == ("currentLevel",)


@pytest.mark.parametrize(
    ("window", "field", "message"),
    [
        ("{size: 0}", "window.size", "input should be greater than 0"),
        ("{size: 5 minutes}", "window.size", "'5 minutes' is not a duration"),
        ("{size: 5m, step: 2m}", "window", "step must divide size"),
        ("{size: 5m, step: 10m}", "window", "step must divide size"),
        ("{size: 5m, grace: -1s}", "window.grace", "greater than or equal to 0"),
    ],
)
def test_bad_window(tmp_path, window, field, message):
    problem = only_problem(tmp_path, GOOD.replace("{size: 5m}", window))
    assert problem.startswith(f"{tmp_path / 'aggregates.yaml'}:8: aggregate 'air_station_5m': ")
    assert f": {field}: " in problem and message in problem


def test_unknown_statistic(tmp_path):
    problem = only_problem(tmp_path, GOOD.replace("[count, mean]", "[count, median]"))
    assert ":7: aggregate 'air_station_5m': statistics[1]: unknown statistic 'median'" in problem
    assert "expected one of count, sum, min, max, mean, last, distinct, p50" in problem


def test_unknown_key_lists_the_known_ones(tmp_path):
    problem = only_problem(tmp_path, GOOD + "    colour: red\n")
    assert ":9: aggregate 'air_station_5m': colour: unknown key; expected one of name, " in problem
    problem = only_problem(tmp_path, GOOD.replace("{size: 5m}", "{size: 5m, slide: 1m}"))
    assert ":8: aggregate 'air_station_5m': window.slide: unknown key; expected one of size" in (
        problem
    )
    problem = only_problem(
        tmp_path, GOOD.replace("{type: AirQualityObserved}", "{pm25: {above: 3}}")
    )
    assert ":4: aggregate 'air_station_5m': filter.pm25.above: unknown key; expected one of eq" in (
        problem
    )


def test_duplicate_name(tmp_path):
    body = GOOD.split("\n", 1)[1]
    problem = only_problem(tmp_path, GOOD + body)
    assert problem == (
        f"{tmp_path / 'aggregates.yaml'}:9: aggregate 'air_station_5m': name: used twice "
        "(first at line 2)"
    )


def test_every_problem_is_listed_with_its_own_line(tmp_path):
    text = """\
    aggregates:
      - name: first
        family: city
        group_by: [refDevice]
        statistics: [count]
        window: {size: 0}
      - name: Second
        family: town
        statistics: [count]
        window: {size: 1m}
      - name: third
        family: security
        filter:
          event.outcome: failur
          event.category: {in: [authentication, logon]}
        group_by: [organization.name, source]
        values: [user.name]
        statistics: [mean]
        window: {size: 1m}
    """
    found = problems(tmp_path, text)
    path = tmp_path / "aggregates.yaml"
    assert found[0] == f"{path}:6: aggregate 'first': window.size: input should be greater than 0"
    assert found[1].startswith(f"{path}:7: aggregate 'Second': name: string should match pattern")
    assert found[2].startswith(f"{path}:8: aggregate 'Second': family: input should be 'city'")
    assert found[3].startswith(f"{path}:14: aggregate 'third': filter.event.outcome.eq: 'failur'")
    assert "one of failure, success, unknown" in found[3]
    assert found[4].startswith(f"{path}:15: aggregate 'third': filter.event.category.in: 'logon'")
    assert found[5] == (
        f"{path}:16: aggregate 'third': group_by[1]: cannot group by 'source': it is an object"
    )
    assert found[6] == (
        f"{path}:17: aggregate 'third': values[0]: 'user.name' is not numeric; mean needs numbers"
    )
    assert len(found) == 7


def test_nested_aliased_and_computed_paths_are_known(tmp_path):
    text = """\
    aggregates:
      - name: malware
        family: security
        filter: {"@timestamp": {exists: true}, file.hash.sha256: {exists: true}}
        group_by: [organization.name, event.category]
        values: [destination.port]
        statistics: [count, max, distinct]
        window: {size: 1h}
      - name: on_time
        family: services
        filter: {kind: dossier, status: {in: [resolved]}, fee_vnd: {gte: 0}}
        values: [on_time, fee_vnd]
        statistics: [mean, p90]
        window: {size: 1d, offset: -7h}
        emit: {running_every: 30s}
    """
    malware, on_time = load_aggregates(write(tmp_path, text))
    assert malware.group_by == ("organization.name", "event.category")
    assert on_time.window.offset == -7 * 3_600_000 and on_time.emit.running_every == 30_000


def test_feedback_only_fields_need_kind_feedback(tmp_path):
    text = """\
    aggregates:
      - name: satisfaction
        family: services
        filter: {kind: dossier}
        values: [satisfied]
        statistics: [mean]
        window: {size: 1d}
    """
    assert "values[0]: unknown field 'satisfied' for DossierEvent events" in only_problem(
        tmp_path, text
    )
    assert load_aggregates(write(tmp_path, text.replace("dossier", "feedback")))


def test_misc_problems(tmp_path):
    found = problems(
        tmp_path,
        """\
        aggregates:
          - name: a
            family: city
            filter: {type: [AirQualityObserved], pm25: {gt: "high"}}
            statistics: [count, count]
            window: {size: 1m}
            emit: sometimes
          - name: b
            family: city
            filter: {type: Spaceship, refDevice: {gt: 3}}
            statistics: [sum]
            window: {size: 1m}
            window: {size: 2m}
        """,
    )
    text = "\n".join(found)
    assert ":4: aggregate 'a': filter.type: a list is ambiguous here" in text
    assert ":4: aggregate 'a': filter.pm25.gt: expected a number, got str" in text
    assert ":5: aggregate 'a': statistics: 'count' is listed twice" in text
    assert ":7: aggregate 'a': emit: expected 'final' or {running_every: <duration>}" in text
    assert ":13: aggregate 'b': window: given twice" in text
    assert ":10: aggregate 'b': filter.type.eq: 'Spaceship' is not a possible value" in text
    assert ":10: aggregate 'b': filter.refDevice.gt: comparisons need a numeric field" in text
    assert ":11: aggregate 'b': statistics: sum needs at least one field in values" in text


def test_not_a_list_of_aggregates(tmp_path):
    [problem] = problems(tmp_path, "rules: []\n")
    assert problem.endswith(":1: expected a mapping with an `aggregates` list at the top")
    [problem] = problems(tmp_path, "aggregates: [\n")
    assert "not valid YAML" in problem


def test_direct_construction_checks_paths_too():
    with pytest.raises(ValidationError, match="values\\[0\\]: unknown field 'pm2_5'"):
        Aggregate.model_validate(
            {
                "name": "x",
                "family": "city",
                "values": ["pm2_5"],
                "statistics": ["mean"],
                "window": {"size": "1m"},
            }
        )


def test_fingerprint_follows_the_definition_not_the_description():
    aggregate = Aggregate.model_validate(
        {"name": "x", "family": "city", "statistics": ["count"], "window": {"size": "1m"}}
    )
    described = aggregate.model_copy(update={"description": "words"})
    resized = Aggregate.model_validate(
        {"name": "x", "family": "city", "statistics": ["count"], "window": {"size": "2m"}}
    )
    assert aggregate.fingerprint() == described.fingerprint() != resized.fingerprint()
