"""Aggregates declared as data: the model, the checks of its field paths, the loader.

An aggregates file is YAML with one top-level key, `aggregates`, a list of:

    - name: air_station_5m            # [a-z][a-z0-9_]*, unique in the file
      family: city                    # city | services | security
      description: PM means per station, for the wall display
      filter:                         # field path → scalar (equals) or operators
        type: AirQualityObserved
        pm25: {gte: 0, lt: 1000}      # eq ne in not_in gt gte lt lte exists
      group_by: [refDevice, areaServed]   # [] = one global group
      missing_group: unknown          # or reject: an event without a group_by field
      values: [pm25, pm10]            # [] for count-only aggregates
      statistics: [count, mean, max]  # count sum min max mean last distinct p50 p90 p95 p99
      window: {size: 5m, step: 1m, grace: 30s, offset: -7h}
      emit: {running_every: 10s}      # or `final` (the default)

Field paths name fields of the family's event models as the validated topic carries
them (`@timestamp`, `event.outcome`, `file.hash.sha256`, the computed `on_time`); a
path no model of the family has is an error. For city (`type`) and services (`kind`)
a filter that pins the model restricts the paths to that model's fields.

Filters on a list-valued field (ECS `event.category`) test membership: `eq`/`in` mean
"contains"; grouping by such a field puts the event in one group per element.

An event without a value for a group_by field (absent, null, an object, an empty
list) is grouped under the value `"unknown"` for that field (`missing_group:
unknown`, the default), or dead-lettered as `schema` with a reason naming the field
(`missing_group: reject`, which then keeps the event out of every aggregate).

Windows start at `offset + k * step` ms since the epoch (`step` = `size` when absent:
tumbling). `offset: -7h` aligns daily windows to midnight in Việt Nam (UTC+7).
A window [start, end) closes when its partition's watermark reaches end + grace.

`load_aggregates` reports every problem of a file at once, one per line:
`<file>:<line>: aggregate '<name>': <field>: <message>` (models.configfile). Filters
and field paths are checked by models.fields; the record each window produces is
`WindowResult` (models.results).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from models.configfile import Loc, dotted, load_declarations, pydantic_message, unknown_key
from models.errors import AggregateConfigError
from models.families import TIME_FIELDS, Family
from models.fields import OPERATORS, Condition, check_filter, field_type
from models.timefmt import Duration

__all__ = [
    "DEFAULT_PACK",
    "NUMERIC_STATISTICS",
    "PERCENTILES",
    "STATISTICS",
    "Aggregate",
    "Emit",
    "MissingGroup",
    "Statistic",
    "Window",
    "check_fields",
    "default_aggregates",
    "load_aggregates",
]

Statistic = Literal[
    "count", "sum", "min", "max", "mean", "last", "distinct", "p50", "p90", "p95", "p99"
]
STATISTICS: tuple[str, ...] = get_args(Statistic)
#: What an event without a value for a group_by field does: joins the group "unknown"
#: for that field, or is dead-lettered (streams.core.windows.engine).
MissingGroup = Literal["unknown", "reject"]
PERCENTILES: dict[str, float] = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
#: Statistics that need numbers (a boolean counts as 1/0: the mean of a flag is a share).
NUMERIC_STATISTICS = frozenset({"sum", "min", "max", "mean", *PERCENTILES})

PositiveDuration = Annotated[Duration, Field(gt=0)]
NonNegativeDuration = Annotated[Duration, Field(ge=0)]


# ---------------------------------------------------------------------------------------
# The declaration


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Window(_Config):
    size: PositiveDuration
    step: PositiveDuration | None = None
    grace: NonNegativeDuration = 0
    offset: Duration = 0

    @model_validator(mode="after")
    def _hops_divide_the_size(self) -> Window:
        if self.step is not None and (self.step > self.size or self.size % self.step):
            raise PydanticCustomError(
                "window",
                "step must divide size (step <= size and size % step == 0); got size {size} ms,"
                " step {step} ms",
                {"size": self.size, "step": self.step},
            )
        return self

    @property
    def hop(self) -> int:
        """Distance between window starts (= size for tumbling windows)."""
        return self.step or self.size


class Emit(_Config):
    """`final` (only the final result), or also running updates at most every N."""

    running_every: PositiveDuration | None = None

    @model_validator(mode="before")
    @classmethod
    def _final(cls, data: Any) -> Any:
        if data == "final":
            return {}
        if isinstance(data, str):
            raise PydanticCustomError(
                "emit", "expected 'final' or {running_every: <duration>}, got {value}",
                {"value": repr(data)},
            )  # fmt: skip
        return data


def _statistic(value: Any) -> Any:
    if isinstance(value, str) and value not in STATISTICS:
        raise PydanticCustomError(
            "statistic",
            "unknown statistic {value}; expected one of {known}",
            {"value": repr(value), "known": ", ".join(STATISTICS)},
        )
    return value


def _unique(values: tuple[Any, ...]) -> tuple[Any, ...]:
    for index, value in enumerate(values):
        if value in values[:index]:
            raise PydanticCustomError(
                "duplicate", "{value} is listed twice", {"value": repr(value)}
            )
    return values


class Aggregate(_Config):
    """One windowed aggregate: filter → group_by → window → statistics."""

    name: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=100)]
    family: Family
    description: StrictStr | None = None
    filter: dict[StrictStr, Condition] = Field(default_factory=dict)
    group_by: tuple[StrictStr, ...] = ()
    missing_group: MissingGroup = "unknown"
    values: tuple[StrictStr, ...] = ()
    statistics: Annotated[
        tuple[Annotated[Statistic, BeforeValidator(_statistic)], ...], Field(min_length=1)
    ]
    window: Window
    emit: Emit = Emit()

    @field_validator("group_by", "values", "statistics")
    @classmethod
    def _listed_once(cls, values: tuple[Any, ...]) -> tuple[Any, ...]:
        return _unique(values)

    @model_validator(mode="after")
    def _fields_exist(self, info: ValidationInfo) -> Aggregate:
        problems = check_fields(self)
        collect = (info.context or {}).get("problems")
        if collect is not None:  # load_aggregates reports them with their lines
            collect.extend(problems)
        elif problems:
            raise ValueError("; ".join(f"{dotted(loc)}: {message}" for loc, message in problems))
        return self

    @property
    def time_field(self) -> str:
        return TIME_FIELDS[self.family]

    def fingerprint(self) -> str:
        """Changes with anything that decides the figures (not description or emit)."""
        ignored = {"description", "emit"}
        if self.missing_group == "unknown":
            # The default adds groups but changes none that existed before it did:
            # the state of a worker from before the setting stays valid.
            ignored.add("missing_group")
        decisive = self.model_dump(mode="json", by_alias=True, exclude=ignored)
        digest = hashlib.blake2b(orjson.dumps(decisive, option=orjson.OPT_SORT_KEYS), digest_size=4)
        return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Field paths against the family's models


def check_fields(aggregate: Aggregate) -> list[tuple[Loc, str]]:
    """Problems with the field paths of an aggregate: (location, message) pairs."""
    problems = check_filter(aggregate, aggregate.filter)
    for index, path in enumerate(aggregate.group_by):
        found = field_type(aggregate, path)
        if isinstance(found, str):
            problems.append((("group_by", index), found))
        elif not found.scalar:
            problems.append((("group_by", index), f"cannot group by {path!r}: it is an object"))
    numeric = sorted(set(aggregate.statistics) & NUMERIC_STATISTICS)
    for index, path in enumerate(aggregate.values):
        found = field_type(aggregate, path)
        if isinstance(found, str):
            problems.append((("values", index), found))
        elif not found.scalar or found.is_list:
            problems.append((("values", index), f"{path!r} is not a single value"))
        elif numeric and not found.kinds <= {"number", "bool", "any"}:
            problems.append(
                (("values", index), f"{path!r} is not numeric; {_need(numeric)} numbers")
            )
    value_stats = [s for s in aggregate.statistics if s != "count"]
    if value_stats and not aggregate.values:
        problems.append((("statistics",), f"{_need(value_stats)} at least one field in values"))
    return problems


def _need(statistics: Sequence[str]) -> str:
    return ", ".join(statistics) + (" needs" if len(statistics) == 1 else " need")


# ---------------------------------------------------------------------------------------
# Loading with line numbers

_MODELS_AT: dict[str, type[BaseModel]] = {"window": Window, "emit": Emit}


def _message(error: Any, loc: Loc) -> str:
    if error["type"] == "extra_forbidden":
        if len(loc) == 1:
            return unknown_key(list(Aggregate.model_fields))
        if loc[0] in _MODELS_AT:
            return unknown_key(list(_MODELS_AT[str(loc[0])].model_fields))
        if loc[0] == "filter":
            return unknown_key(OPERATORS)
        return unknown_key()
    return pydantic_message(error)


def _validate(raw: Any) -> tuple[Aggregate | None, list[tuple[Loc, str]]]:
    """One aggregate of a file and its problems, each with the location it is at."""
    checks: list[tuple[Loc, str]] = []
    try:
        aggregate = Aggregate.model_validate(raw, context={"problems": checks})
    except ValidationError as exc:
        problems: list[tuple[Loc, str]] = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            problems.append((loc, f"{dotted(loc) or 'aggregate'}: {_message(error, loc)}"))
        checks = _check_what_is_valid(raw, exc)
        return None, problems + [(loc, f"{dotted(loc)}: {message}") for loc, message in checks]
    return aggregate, [(loc, f"{dotted(loc)}: {message}") for loc, message in checks]


def load_aggregates(path: Path) -> list[Aggregate]:
    """Aggregates from a YAML file; `AggregateConfigError` lists every problem found."""
    return load_declarations(path, "aggregates", AggregateConfigError, _validate)


#: The aggregates of the reference province (Hải Dương), used when none are configured.
DEFAULT_PACK: Final = Path(__file__).resolve().parent / "packs" / "aggregates.yaml"


def default_aggregates() -> list[Aggregate]:
    return load_aggregates(DEFAULT_PACK)


def _check_what_is_valid(raw: Any, exc: ValidationError) -> list[tuple[Loc, str]]:
    """The field-path problems of an aggregate that also has structural ones: checked
    with the broken parts left out, so that one run of the loader shows them all."""
    if not isinstance(raw, dict):
        return []
    broken = {error["loc"][0] for error in exc.errors() if error["loc"]}
    kept = {k: v for k, v in raw.items() if k in Aggregate.model_fields and k not in broken}
    stand_ins = {"name": "x", "statistics": ["count"], "window": {"size": 1}}
    checks: list[tuple[Loc, str]] = []
    try:
        Aggregate.model_validate(stand_ins | kept, context={"problems": checks})
    except ValidationError:
        return []  # e.g. no valid family: nothing to check paths against
    return checks
