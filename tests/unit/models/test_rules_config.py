"""Alert rules as data: the YAML format, its checks and their error messages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from models.errors import RuleConfigError
from models.rulefile import default_rules, load_rules
from models.rules import CountRule, ThresholdRule
from streams.cli import main
from streams.core.windows import default_aggregates

GOOD = """\
rules:
  - name: brute_force
    kind: count
    family: security
    filter: {event.category: authentication, event.outcome: failure}
    group_by: [source.ip]
    window: 5m
    gte: 10
    summary:
      vi: "Dò mật khẩu từ {source.ip}: {value} lần trong {window}"
      en: "Brute force from {source.ip}: {value} failures in {window}"
"""

AQI = """\
rules:
  - name: aqi_poor
    kind: threshold
    aggregate: aqi_station_1h
    group_by: [refDevice, areaServed]
    statistic: aqi
    bands:
      - {severity: warning, above: 100, clear_below: 96, label: poor}
      - {severity: critical, above: 200, label: very bad}
    summary: {vi: "VN_AQI {value} ({band})", en: "VN_AQI {value} ({band})"}
"""


@pytest.fixture(scope="module")
def aggregates():
    return default_aggregates()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, aggregates) -> list[str]:
    with pytest.raises(RuleConfigError) as caught:
        load_rules(write(tmp_path, text), aggregates)
    return caught.value.problems


def only_problem(tmp_path: Path, text: str, aggregates) -> str:
    [problem] = problems(tmp_path, text, aggregates)
    return problem


def test_the_default_pack_loads():
    rules = default_rules()
    by_name = {rule.name: rule for rule in rules}
    assert {
        "aqi_poor", "brute_force", "password_spraying", "port_scan", "possible_compromise",
        "malware_seen", "malware_spreading", "water_rising", "water_above_alert_level",
        "water_above_danger_level", "dossiers_late", "overdue_backlog", "feedback_overdue",
        "sensor_silent", "firewall_silent", "traffic_anomaly",
    } <= set(by_name)  # fmt: skip
    assert {rule.kind for rule in rules} == {
        "threshold", "count", "distinct", "rate", "ratio", "absence", "sequence", "match",
        "baseline",
    }  # fmt: skip
    aqi = by_name["aqi_poor"]
    assert isinstance(aqi, ThresholdRule) and aqi.bands is not None
    assert [band.label for band in aqi.bands] == ["poor", "bad", "very bad", "hazardous"]


def test_a_good_rule_loads_with_defaults_and_durations_in_ms(tmp_path, aggregates):
    [rule] = load_rules(write(tmp_path, GOOD), aggregates)
    assert isinstance(rule, CountRule)
    assert rule.window == 300_000 and rule.gte == 10
    assert rule.severity == "warning" and rule.for_ == 0 and rule.keep_firing_for == 0
    assert rule.flap.limit == 4 and rule.flap.window == 30 * 60_000
    assert rule.filter["event.outcome"].eq == "failure"


def test_bands_with_labels_load(tmp_path, aggregates):
    [rule] = load_rules(write(tmp_path, AQI), aggregates)
    assert isinstance(rule, ThresholdRule) and rule.bands is not None
    assert rule.bands[1].clear_below is None and rule.bands[1].label == "very bad"


def test_wrong_field_name_names_file_line_rule_and_field(tmp_path, aggregates):
    path = write(tmp_path, GOOD.replace("[source.ip]", "[source.ipaddr]"))
    with pytest.raises(RuleConfigError) as caught:
        load_rules(path, aggregates)
    assert caught.value.problems[0] == (
        f"{path}:6: rule 'brute_force': group_by[0]: unknown field 'source.ipaddr' for "
        "SecurityEvent events; did you mean 'source.ip'?"
    )


def test_a_pinned_type_limits_fields_to_its_model(tmp_path, aggregates):
    text = """\
    rules:
      - name: water
        kind: rate
        family: city
        filter: {type: FloodMonitoring}
        group_by: [refDevice]
        value: pm25
        rise: 0.3
        window: 15m
        summary: {vi: "{value}", en: "{value}"}
    """
    assert only_problem(tmp_path, text, aggregates).endswith(
        ":7: rule 'water': value: unknown field 'pm25' for FloodMonitoring events"
    )


def test_unknown_aggregate(tmp_path, aggregates):
    problem = only_problem(tmp_path, AQI.replace("aqi_station_1h", "aqi_station_2h"), aggregates)
    assert problem == (
        f"{tmp_path / 'rules.yaml'}:4: rule 'aqi_poor': aggregate: unknown aggregate "
        "'aqi_station_2h'; did you mean 'aqi_station_1h'?"
    )


def test_unknown_statistic(tmp_path, aggregates):
    problem = only_problem(
        tmp_path, AQI.replace("statistic: aqi", "statistic: aqi_max"), aggregates
    )
    assert ":6: rule 'aqi_poor': statistic: aqi_station_1h has no statistic 'aqi_max'" in problem
    problem = only_problem(tmp_path, AQI.replace("statistic: aqi", "statistic: band"), aggregates)
    assert ":6: rule 'aqi_poor': statistic: 'band' of aqi_station_1h is not a number" in problem


def test_group_by_must_be_labels_of_the_aggregate(tmp_path, aggregates):
    problem = only_problem(
        tmp_path, AQI.replace("[refDevice, areaServed]", "[district]"), aggregates
    )
    assert ":5: rule 'aqi_poor': group_by[0]: 'district' is not a group label of aqi_" in problem
    assert "(labels: refDevice, areaServed)" in problem
    # A subset is fine: the engine sums over the labels left out.
    assert load_rules(write(tmp_path, AQI.replace("[refDevice, areaServed]", "[areaServed]")))


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ("0s", "window: must be longer than 0"),
        ("-5m", "window: must be longer than 0"),
        ("32d", "window: must be at most 31d"),
        ("5 minutes", "window: '5 minutes' is not a duration"),
    ],
)
def test_bad_window(tmp_path, aggregates, window, message):
    problem = only_problem(tmp_path, GOOD.replace("window: 5m", f"window: {window}"), aggregates)
    assert problem.startswith(f"{tmp_path / 'rules.yaml'}:7: rule 'brute_force': {message}")


def test_negative_for(tmp_path, aggregates):
    problem = only_problem(tmp_path, GOOD.replace("gte: 10", "gte: 10\n    for: -1m"), aggregates)
    assert ":9: rule 'brute_force': for: must not be negative" in problem


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        (
            "aggregate: auth_failures_5m",
            4,
            "aggregate: count rules read raw events: give family, not aggregate",
        ),
        ("family: security\n    aggregate: auth_failures_5m", 5, "aggregate: give family or"),
        ("description: none", 2, "family: count rules need a source: give family"),
    ],
)
def test_kind_and_source_mismatch(tmp_path, aggregates, source, line, message):
    problem = problems(tmp_path, GOOD.replace("family: security", source), aggregates)[0]
    assert f":{line}: rule 'brute_force': {message}" in problem


def test_baseline_needs_an_aggregate(tmp_path, aggregates):
    text = """\
    rules:
      - name: traffic
        kind: baseline
        family: city
        statistic: intensity_sum
        sigmas: 3
        summary: {vi: "{value}", en: "{value}"}
    """
    [problem, *_] = problems(tmp_path, text, aggregates)
    assert ":4: rule 'traffic': family: baseline rules read an aggregate's results: give" in problem


def test_extra_key_lists_the_kinds_keys(tmp_path, aggregates):
    problem = only_problem(tmp_path, GOOD.replace("gte: 10", "gte: 10\n    above: 3"), aggregates)
    assert ":9: rule 'brute_force': above: unknown key for CountRule; expected one of name," in (
        problem
    )
    assert "window, gte" in problem


def test_unknown_kind(tmp_path, aggregates):
    problem = only_problem(tmp_path, GOOD.replace("kind: count", "kind: counter"), aggregates)
    assert ":3: rule 'brute_force': kind: unknown kind 'counter'; expected one of threshold" in (
        problem
    )


def test_unknown_placeholder(tmp_path, aggregates):
    problem = only_problem(
        tmp_path, GOOD.replace("{source.ip}: {value} failures", "{user}"), aggregates
    )
    assert ":11: rule 'brute_force': summary.en: unknown placeholder {user}; known: " in problem


@pytest.mark.parametrize("bad", ["{value:>3}", "{value!r}", "{source[0]}", "{value", "{}"])
def test_a_template_that_is_not_a_plain_placeholder(tmp_path, aggregates, bad):
    problem = only_problem(tmp_path, GOOD.replace("{value} lần", f"{bad} lần"), aggregates)
    assert ":10: rule 'brute_force': summary.vi: " in problem
    assert "not a plain placeholder" in problem or "unbalanced brace" in problem


def test_band_order_and_hysteresis(tmp_path, aggregates):
    text = AQI.replace("above: 200", "above: 90").replace("clear_below: 96", "clear_below: 120")
    found = problems(tmp_path, text, aggregates)
    assert any(
        ":8: rule 'aqi_poor': bands[0].clear_below: 120 is above the level 100" in p for p in found
    )
    assert any(
        ":9: rule 'aqi_poor': bands[1].above: 90 is not above the previous band's 100" in p
        for p in found
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("gte: 10", "gte: input should be greater than or equal to 1"),
    ],
)
def test_bad_counts(tmp_path, aggregates, change, message):
    problem = only_problem(tmp_path, GOOD.replace("gte: 10", change.replace("10", "0")), aggregates)
    assert f":8: rule 'brute_force': {message}" in problem


def test_ratio_bounds(tmp_path, aggregates):
    text = """\
    rules:
      - name: late
        kind: ratio
        family: services
        filter: {kind: dossier, status: resolved}
        group_by: [agency]
        numerator: {on_time: true}
        below: 95
        window: 7d
        summary: {vi: "{agency} {value}", en: "{agency} {value}"}
    """
    problem = only_problem(tmp_path, text, aggregates)
    assert ":8: rule 'late': below: must be a share between 0 and 1 (got 95)" in problem


def test_every_problem_is_listed_with_its_own_line(tmp_path, aggregates):
    text = GOOD.replace("authentication,", "authentification,").replace("gte: 10", "gte: 0")
    text += GOOD.split("\n", 1)[1].replace("brute_force", "second").replace("5m", "0s")
    found = problems(tmp_path, text, aggregates)
    assert [problem.split(": ", 2)[1] for problem in found] == [
        "rule 'brute_force'",
        "rule 'brute_force'",
        "rule 'second'",
    ]
    assert ":5: rule 'brute_force': filter.event.category.eq: 'authentification' is not" in found[0]
    assert ":8: rule 'brute_force': gte: " in found[1]
    assert ":17: rule 'second': window: must be longer than 0" in found[2]


def test_cli_exit_codes(tmp_path, capsys):
    good = write(tmp_path, GOOD)
    assert main(["rules", "check", str(good)]) == 0
    assert capsys.readouterr().out.strip() == f"{good}: 1 rules, valid"

    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("window: 5m", "window: 0s"), encoding="utf-8")
    assert main(["rules", "check", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"{bad}:7: rule 'brute_force': window: must be longer than 0" in captured.err

    aggregates = tmp_path / "aggregates.yaml"
    aggregates.write_text(
        "aggregates:\n  - name: other\n    family: city\n    statistics: [count]\n"
        "    window: {size: 5m}\n",
        encoding="utf-8",
    )
    aqi = tmp_path / "aqi.yaml"
    aqi.write_text(AQI, encoding="utf-8")
    assert main(["rules", "check", str(aqi)]) == 0
    capsys.readouterr()
    assert main(["rules", "check", "--aggregates", str(aggregates), str(aqi)]) == 1
    assert "unknown aggregate 'aqi_station_1h'" in capsys.readouterr().err


def test_the_default_pack_keeps_the_rules_a_custom_aggregates_file_can_run():
    from models.rulefile import default_rules
    from streams.core.windows import default_aggregates

    only_security = [a for a in default_aggregates() if a.family == "security"]
    kept = {rule.name for rule in default_rules(only_security)}
    everything = {rule.name: rule for rule in default_rules()}
    dropped = set(everything) - kept
    # Rules on the city aggregates (and the AQI derived from them) are left out;
    # case_backlog is the case stage's, always there.
    assert dropped == {"aqi_poor", "traffic_anomaly"}
    assert {everything[name].aggregate for name in dropped} == {
        "aqi_station_1h", "traffic_counter_5m",
    }  # fmt: skip
