"""The aggregates and rules a worker runs: the configured files or the default packs."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.errors import RuleConfigError
from models.rulefile import default_rules
from streams.core.windows import default_aggregates
from streams.worker.configuration import configured, resolve
from streams.worker.settings import Settings

PACK = """
aggregates:
  - name: noise_5m
    family: city
    filter: {type: NoiseLevelObserved}
    group_by: [refDevice]
    values: [LAeq]
    statistics: [mean]
    window: {size: 5m}
"""

RULES = """
rules:
  - name: loud
    kind: threshold
    aggregate: noise_5m
    group_by: [refDevice]
    statistic: LAeq_mean
    above: 70
    severity: warning
    summary: {vi: "Ồn tại {refDevice}", en: "Loud at {refDevice}"}
"""


def test_expected_are_the_pack_then_what_is_derived_from_it(tmp_path: Path):
    names = configured(Settings()).outputs
    pack = [aggregate.name for aggregate in default_aggregates()]
    assert names == [*pack, "aqi_station_1h", "case_backlog"]

    path = tmp_path / "pack.yaml"
    path.write_text(PACK)
    settings = Settings(windows={"aggregates": path})
    # No air_station_1h to derive the AQI from; the case backlog comes from its own stage.
    assert configured(settings).outputs == ["noise_5m", "case_backlog"]


def test_expected_rules_are_the_default_pack():
    assert configured(Settings()).rule_names == [rule.name for rule in default_rules()]


def test_default_rules_a_custom_aggregates_file_cannot_feed_are_left_out(tmp_path: Path):
    path = tmp_path / "pack.yaml"
    path.write_text(PACK)
    configuration = resolve(path, None)
    assert configuration.aggregates_file == path and configuration.rules_file is None
    left_out = configuration.left_out_rules()
    assert left_out == sorted(left_out) and {"aqi_poor", "traffic_anomaly"} <= set(left_out)
    assert not set(left_out) & set(configuration.rule_names)
    assert resolve(None, None).left_out_rules() == []


def test_a_rules_file_is_checked_against_the_aggregates_file(tmp_path: Path):
    aggregates, rules = tmp_path / "pack.yaml", tmp_path / "rules.yaml"
    aggregates.write_text(PACK)
    rules.write_text(RULES)
    try:
        configuration = resolve(aggregates, rules)
    except RuleConfigError as exc:  # the file above must be a valid rule
        pytest.fail(str(exc))
    assert configuration.rule_names == ["loud"]
    assert configuration.left_out_rules() == []
    with pytest.raises(RuleConfigError, match="noise_5m"):
        resolve(None, rules)  # the default pack declares no noise_5m


def test_a_missing_file_raises_oserror(tmp_path: Path):
    with pytest.raises(OSError):
        resolve(tmp_path / "absent.yaml", None)
