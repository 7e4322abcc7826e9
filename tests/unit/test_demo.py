"""What `ioc demo` prints about `ioc.aggregates`, and which aggregates it expects."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from streams.demo import Tally, _aggregates_summary, expected_aggregates
from streams.settings import Settings
from streams.windows import default_aggregates

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


def test_expected_are_the_pack_then_what_is_derived_from_it(tmp_path: Path):
    names = expected_aggregates(Settings())
    pack = [aggregate.name for aggregate in default_aggregates()]
    assert names == [*pack, "aqi_station_1h", "case_backlog"]

    path = tmp_path / "pack.yaml"
    path.write_text(PACK)
    settings = Settings(windows={"aggregates": path})
    # No air_station_1h to derive the AQI from; the case backlog comes from its own stage.
    assert expected_aggregates(settings) == ["noise_5m", "case_backlog"]


def test_the_summary_counts_each_aggregate_and_names_those_without_a_final():
    tally: Tally = Counter({("a", True): 3, ("a", False): 7, ("b", False): 2, ("extra", True): 1})
    lines = _aggregates_summary(tally, True, ["a", "b", "c"])
    rows = [line.split() for line in lines[1:4]]
    assert rows == [["a", "3", "7"], ["b", "0", "2"], ["c", "0", "0"]]
    assert lines[4].split() == ["extra", "1", "0"]  # not configured, still shown
    assert lines[-1] == "no final result for: b, c"

    done = _aggregates_summary(Counter({("a", True): 1}), True, ["a"])
    assert done[-1] == "every configured aggregate (1) has final results"
    partial = _aggregates_summary(Counter({("a", True): 1}), False, ["a"])
    assert "partial" in partial[-2]
