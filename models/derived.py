"""The aggregates no pack declares but the stages derive, and what a rule may read.

- `aqi_station_1h` (`AQI_AGGREGATE`): the hourly VN_AQI per station (Decision
  1459/QĐ-TCMT), computed by the window stage from each final of `air_station_1h`
  (`AQI_SOURCE_AGGREGATE`) when `unsuitable` finds nothing against that aggregate
  (streams.core.windows.hourly_aqi computes it): same family, group and window.
- `case_backlog` (`BACKLOG_AGGREGATE`): open, overdue and near-due cases per agency
  and kind, reported by the case stage (streams.core.cases).

Both are `WindowResult`s on `ioc.aggregates` like the declared ones (docs/AGGREGATES.md).
`aggregate_outputs` gives, for a pack, every aggregate a rule may read with its group
labels and statistics: the declared ones and the derived ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from models.aggregates import Aggregate
from models.fields import FieldType, field_type

__all__ = [
    "AQI_AGGREGATE",
    "AQI_SOURCE_AGGREGATE",
    "BACKLOG_AGGREGATE",
    "AggregateOutput",
    "aggregate_outputs",
    "unsuitable",
]

#: The derived hourly AQI's name in `ioc.aggregates`.
AQI_AGGREGATE: Final = "aqi_station_1h"
#: The aggregate whose finals are the hourly means the AQI is derived from, by default.
AQI_SOURCE_AGGREGATE: Final = "air_station_1h"
#: The case stage's backlog in `ioc.aggregates`.
BACKLOG_AGGREGATE: Final = "case_backlog"

_HOUR_MS: Final = 3_600_000
_PARTICULATES: Final = ("pm25", "pm10")
_POLLUTANTS: Final = ("pm25", "pm10", "o3", "no2", "so2", "co")


@dataclass(frozen=True)
class AggregateOutput:
    """What an aggregate writes to `ioc.aggregates`: its group labels and statistics."""

    name: str
    family: str
    group: tuple[str, ...]
    #: statistic name → whether it is a number (`band`, a `last` of text: not)
    statistics: Mapping[str, bool] = field(default_factory=dict)


_AQI_STATISTICS: Final[dict[str, bool]] = {
    "aqi": True,
    "dominant": False,
    "band": False,
    "band_vi": False,
    **{f"aqi_{pollutant}": True for pollutant in _POLLUTANTS},
    "nowcast_pm25": True,
    "nowcast_pm10": True,
}
_BACKLOG = AggregateOutput(
    BACKLOG_AGGREGATE,
    "services",
    ("agency", "kind", "partition"),
    {"open": True, "overdue": True, "near_due": True},
)


def unsuitable(aggregate: Aggregate) -> str | None:
    """Why the hourly AQI cannot be derived from `aggregate`'s finals (None: it can)."""
    if not set(_PARTICULATES) & set(aggregate.values):
        return "its values include neither pm25 nor pm10 (the decision requires one of them)"
    if "mean" not in aggregate.statistics:
        return "its statistics lack mean (the AQI is computed from hourly means)"
    if aggregate.window.size != _HOUR_MS or aggregate.window.hop != _HOUR_MS:
        return "its window is not tumbling over 1h (the AQI is computed from hourly means)"
    return None


def _declared_output(aggregate: Aggregate) -> AggregateOutput:
    statistics = {"count": True}
    for value in aggregate.values:
        found = field_type(aggregate, value)
        numeric = isinstance(found, FieldType) and found.kinds <= {"number", "bool", "any"}
        for statistic in aggregate.statistics:
            # Only `last` can hold text; the others are counts or need numbers.
            statistics[f"{value}_{statistic}"] = numeric or statistic != "last"
    return AggregateOutput(aggregate.name, aggregate.family, aggregate.group_by, statistics)


def aggregate_outputs(aggregates: Iterable[Aggregate]) -> dict[str, AggregateOutput]:
    """The aggregates a rule may read: the declared ones, `case_backlog`, and
    `aqi_station_1h` when the window stage derives it from `air_station_1h`."""
    declared = list(aggregates)
    outputs = {aggregate.name: _declared_output(aggregate) for aggregate in declared}
    outputs.setdefault(BACKLOG_AGGREGATE, _BACKLOG)
    hourly = next((a for a in declared if a.name == AQI_SOURCE_AGGREGATE), None)
    if AQI_AGGREGATE not in outputs and hourly is not None and unsuitable(hourly) is None:
        outputs[AQI_AGGREGATE] = AggregateOutput(
            AQI_AGGREGATE, hourly.family, hourly.group_by, _AQI_STATISTICS
        )
    return outputs
