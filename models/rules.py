"""Alert rules declared as data (docs/RULES.md), and their validation at load.

A rules file is YAML with one top-level key, `rules`, a list of rules. Each rule reads
either raw events of a `family` or the results of a declared `aggregate`, and has the
keys of its `kind` only (one model per kind, chosen by `kind`):

    - name: brute_force               # [a-z][a-z0-9_]*, unique in the file
      kind: count
      family: security
      filter: {event.category: authentication, event.outcome: failure}
      group_by: [source.ip]
      window: 5m
      gte: 10
      summary: {vi: "… {source.ip} …", en: "… {source.ip} …"}

Field paths, filters and durations are those of aggregates (models.aggregates, the same
code checks them). `load_rules` reports every problem of a file at once, one per line:
`<file>:<line>: rule '<name>': <field>: <message>`.

Templates (`summary.vi`, `summary.en`) hold plain named placeholders only: `{source.ip}`,
`{value}`. Nothing is evaluated, so a template from a configuration file cannot reach
into objects; `placeholders` parses them, and the alert stage substitutes with
`PLACEHOLDER`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from models.aggregates import (
    Aggregate,
    Condition,
    ConfigError,
    Duration,
    Family,
    FieldType,
    Loc,
    Number,
    check_filter,
    default_aggregates,
    dotted,
    duplicate_keys,
    field_type,
    node_at,
    read_list_document,
)

__all__ = [
    "DEFAULT_RULES_PACK",
    "KINDS",
    "MAX_SPAN_MS",
    "PLACEHOLDER",
    "SEVERITIES",
    "AbsenceRule",
    "AggregateOutput",
    "Band",
    "BaselineRule",
    "CountRule",
    "DistinctRule",
    "FieldRef",
    "Flap",
    "Kind",
    "MatchRule",
    "RateRule",
    "RatioRule",
    "Rule",
    "RuleConfigError",
    "SequenceRule",
    "Severity",
    "Summary",
    "ThresholdRule",
    "aggregate_outputs",
    "default_rules",
    "load_rules",
    "placeholders",
]

Kind = Literal[
    "threshold", "count", "distinct", "rate", "ratio", "absence", "sequence", "match", "baseline"
]
KINDS: tuple[str, ...] = get_args(Kind)
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)

#: The pack for the reference province (Hải Dương), used when none is configured.
DEFAULT_RULES_PACK: Final = Path(__file__).resolve().parent / "packs" / "rules.yaml"

#: Longest window, `after`, `within`, `for` or `keep_firing_for`: windows live in memory,
#: and a month is already beyond any operational alert.
MAX_SPAN_MS: Final = 31 * 86_400_000

#: Where each kind may read from (docs/RULES.md, "Kinds").
SOURCES: Final[dict[str, tuple[str, ...]]] = {
    "threshold": ("family", "aggregate"),
    "baseline": ("aggregate",),
    **{kind: ("family",) for kind in KINDS if kind not in ("threshold", "baseline")},
}

#: Placeholders every rule's templates may use, besides its group labels and `labels` keys.
ALWAYS_AVAILABLE: Final = ("value", "threshold", "window", "rule", "severity")
#: Labels the alert stage sets itself (docs/RULES.md, "The ioc.alerts record").
RESERVED_LABELS: Final = ("alertname", "severity")


class RuleConfigError(ConfigError):
    """A rules file is invalid; the message lists every problem, one per line."""


# ---------------------------------------------------------------------------------------
# Templates

_NAME = r"@?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
#: A plain placeholder; group 1 is its name (`source.ip`). For substitution:
#: `PLACEHOLDER.sub(lambda m: values[m[1]], text)` once `placeholders(text)` accepted it.
PLACEHOLDER: Final = re.compile(r"\{(" + _NAME + r")\}")
_BRACES = re.compile(r"\{[^{}]*\}|[{}]")


def placeholders(text: str) -> list[str]:
    """The placeholder names of a template, in order of first use, each once.

    Raises ValueError on any brace that is not a plain `{name}`: format specs (`{x:>3}`),
    conversions (`{x!r}`), indexing (`{a[0]}`), empty or unbalanced braces. There is no
    escape for a literal brace: templates are one-line summaries and need none.
    """
    names: list[str] = []
    for match in _BRACES.finditer(text):
        plain = PLACEHOLDER.fullmatch(match[0])
        if plain is None:
            what = "unbalanced brace" if len(match[0]) == 1 else "not a plain placeholder"
            raise ValueError(
                f"{match[0]!r} at character {match.start() + 1}: {what}; write {{name}} with a"
                " field path or label name (no format specs, conversions or indexing)"
            )
        if plain[1] not in names:
            names.append(plain[1])
    return names


# ---------------------------------------------------------------------------------------
# Building blocks


def _span(ms: int) -> int:
    if ms <= 0:
        raise PydanticCustomError("span", "must be longer than 0")
    if ms > MAX_SPAN_MS:
        raise PydanticCustomError("span", "must be at most 31d (got {ms} ms)", {"ms": ms})
    return ms


def _delay(ms: int) -> int:
    if ms < 0:
        raise PydanticCustomError("delay", "must not be negative (got {ms} ms)", {"ms": ms})
    if ms > MAX_SPAN_MS:
        raise PydanticCustomError("delay", "must be at most 31d (got {ms} ms)", {"ms": ms})
    return ms


def _positive(value: float) -> float:
    if value <= 0:
        raise PydanticCustomError("positive", "must be greater than 0 (got {v})", {"v": value})
    return value


def _share(value: float) -> float:
    if not 0 <= value <= 1:
        raise PydanticCustomError(
            "share", "must be a share between 0 and 1 (got {v})", {"v": value}
        )
    return value


#: A window, `after` or `within`: longer than 0, at most 31 days; ms once loaded.
Span = Annotated[Duration, AfterValidator(_span)]
#: `for`, `keep_firing_for`: 0 or more, at most 31 days; ms once loaded.
Delay = Annotated[Duration, AfterValidator(_delay)]
PositiveNumber = Annotated[Number, AfterValidator(_positive)]
Share = Annotated[Number, AfterValidator(_share)]
AtLeastOne = Annotated[StrictInt, Field(ge=1)]
FieldPath = Annotated[StrictStr, Field(min_length=1)]
Filter = dict[StrictStr, Condition]
LabelName = Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FieldRef(_Config):
    """A threshold read from the same event: `above: {field: alertLevel}`."""

    field: FieldPath


def _level(value: Any) -> int | float | FieldRef:
    # One plain check, so that a wrong level gives one message, not one per union member.
    if isinstance(value, FieldRef):
        return value
    if isinstance(value, Mapping):
        if set(value) != {"field"} or not isinstance(value["field"], str):
            raise PydanticCustomError("level", "expected a number or {field: PATH}")
        return FieldRef(field=value["field"])
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise PydanticCustomError("level", "expected a number or {field: PATH}")
    return value


#: A threshold: a number, or `{field: PATH}` (another field of the same event).
Level = Annotated[int | float | FieldRef, PlainValidator(_level)]


class Band(_Config):
    """One band of a threshold rule: fires above `above`, clears below `clear_below`.

    `label` names the band (`poor`, `hazardous`): it becomes the alert's `band` label,
    so that two bands of the same severity are still different alerts."""

    severity: Severity
    above: Level
    clear_below: Level | None = None
    label: Annotated[StrictStr, Field(min_length=1)] | None = None


class Flap(_Config):
    """More than `limit` state changes within `window` hold the alert firing."""

    limit: AtLeastOne = 4
    window: Span = 30 * 60_000


class Summary(_Config):
    vi: StrictStr
    en: StrictStr


# ---------------------------------------------------------------------------------------
# Rules: a common base and one model per kind


class _Rule(_Config):
    name: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=100)]
    family: Family | None = None
    aggregate: StrictStr | None = None
    filter: Filter = Field(default_factory=dict)
    group_by: tuple[FieldPath, ...] = ()
    severity: Severity = "warning"
    for_: Delay = Field(0, alias="for")
    keep_firing_for: Delay = 0
    flap: Flap = Flap()
    labels: dict[LabelName, StrictStr] = Field(default_factory=dict)
    summary: Summary

    @model_validator(mode="after")
    def _valid_against_sources(self, info: ValidationInfo) -> _Rule:
        context = info.context or {}
        problems = check_rule(self, context.get("aggregates"))
        collect = context.get("problems")
        if collect is not None:  # load_rules reports them with their lines
            collect.extend(problems)
        elif problems:
            raise ValueError("; ".join(f"{dotted(loc)}: {message}" for loc, message in problems))
        return self

    def own_problems(self, source: Source) -> list[tuple[Loc, str]]:
        """The kind's own checks; `source` is None when the aggregate is not known."""
        return []

    def template_names(self) -> set[str]:
        """Placeholders the summary may use."""
        return {*ALWAYS_AVAILABLE, *self.group_by, *self.labels}


class ThresholdRule(_Rule):
    """Value (family: `value: FIELD`; aggregate: `statistic: NAME`) above or below a level.

    Either `bands` (highest band reached wins), or one `above` (with `clear_below`) or
    `below` (with `clear_above`) at the rule's severity."""

    kind: Literal["threshold"]
    value: FieldPath | None = None
    statistic: StrictStr | None = None
    bands: Annotated[tuple[Band, ...], Field(min_length=1)] | None = None
    above: Level | None = None
    below: Level | None = None
    clear_below: Level | None = None
    clear_above: Level | None = None

    def own_problems(self, source: Source) -> list[tuple[Loc, str]]:
        problems = _value_or_statistic(self, source)
        given = [key for key in ("bands", "above", "below") if getattr(self, key) is not None]
        if len(given) != 1:
            where: Loc = (given[1],) if len(given) > 1 else ("above",)
            problems.append((where, "give exactly one of bands, above or below"))
        if self.clear_below is not None and self.above is None:
            problems.append((("clear_below",), "only with above"))
        if self.clear_above is not None and self.below is None:
            problems.append((("clear_above",), "only with below"))
        problems += _hysteresis((), self.above, self.clear_below, "clear_below", higher=False)
        problems += _hysteresis((), self.below, self.clear_above, "clear_above", higher=True)
        problems += _band_order(self.bands or ())
        for at, level in self._levels():
            if isinstance(level, FieldRef):
                problems += _level_field(source, at, level)
        return problems

    def _levels(self) -> Iterable[tuple[Loc, Any]]:
        for key in ("above", "below", "clear_below", "clear_above"):
            yield (key,), getattr(self, key)
        for index, band in enumerate(self.bands or ()):
            yield ("bands", index, "above"), band.above
            yield ("bands", index, "clear_below"), band.clear_below

    def template_names(self) -> set[str]:
        labelled = any(band.label for band in self.bands or ())
        return super().template_names() | ({"band"} if labelled else set())


class CountRule(_Rule):
    """≥ `gte` matching events per group within the sliding `window`."""

    kind: Literal["count"]
    window: Span
    gte: AtLeastOne


class DistinctRule(_Rule):
    """≥ `gte` distinct values of `field` per group within the sliding `window`."""

    kind: Literal["distinct"]
    field: FieldPath
    gte: AtLeastOne
    window: Span

    def own_problems(self, source: Source) -> list[tuple[Loc, str]]:
        if not isinstance(source, FamilySource):
            return []
        return source.path_problems(("field",), self.field)


class RateRule(_Rule):
    """`value` − min over the window ≥ `rise` (or max − `value` ≥ `fall`)."""

    kind: Literal["rate"]
    value: FieldPath
    rise: PositiveNumber | None = None
    fall: PositiveNumber | None = None
    window: Span

    def own_problems(self, source: Source) -> list[tuple[Loc, str]]:
        problems = _value_or_statistic(self, source)
        if (self.rise is None) == (self.fall is None):
            where: Loc = ("fall",) if self.rise is not None else ("rise",)
            problems.append((where, "give exactly one of rise or fall"))
        return problems


class RatioRule(_Rule):
    """matching(`numerator`) / matching(rule filter) below (or above) a share, over the
    sliding window, once it holds ≥ `min_events` events."""

    kind: Literal["ratio"]
    numerator: Filter
    below: Share | None = None
    above: Share | None = None
    window: Span
    min_events: AtLeastOne = 1

    def own_problems(self, source: Source) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        if (self.below is None) == (self.above is None):
            where: Loc = ("above",) if self.below is not None else ("below",)
            problems.append((where, "give exactly one of below or above"))
        if not self.numerator:
            problems.append((("numerator",), "empty: the ratio would always be 1"))
        if isinstance(source, FamilySource):
            problems += check_filter(
                source.narrowed(self.numerator), self.numerator, ("numerator",)
            )
        return problems


class AbsenceRule(_Rule):
    """No matching event for a group that has been seen, for longer than `after`."""

    kind: Literal["absence"]
    after: Span


class SequenceRule(_Rule):
    """A `then` event after ≥ `first_count` `first` events of the group, within `within`."""

    kind: Literal["sequence"]
    first: Filter
    first_count: AtLeastOne = 1
    then: Filter
    within: Span

    def own_problems(self, source: Source) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        for key, conditions in (("first", self.first), ("then", self.then)):
            if not conditions:
                problems.append(((key,), "empty: it would match every event"))
            elif isinstance(source, FamilySource):
                problems += check_filter(source.narrowed(conditions), conditions, (key,))
        return problems


class MatchRule(_Rule):
    """Every matching event (one alert per group; `keep_firing_for` bounds it)."""

    kind: Literal["match"]


class BaselineRule(_Rule):
    """|value − mean| > `sigmas`·σ of the same season's earlier values of the group."""

    kind: Literal["baseline"]
    statistic: StrictStr
    sigmas: PositiveNumber
    min_samples: Annotated[StrictInt, Field(ge=2)] = 7  # σ needs at least two values
    season: Literal["hour_of_day"] = "hour_of_day"

    def own_problems(self, source: Source) -> list[tuple[Loc, str]]:
        return _value_or_statistic(self, source)


Rule = Annotated[
    ThresholdRule
    | CountRule
    | DistinctRule
    | RateRule
    | RatioRule
    | AbsenceRule
    | SequenceRule
    | MatchRule
    | BaselineRule,
    Field(discriminator="kind"),
]
_RULE: TypeAdapter[Rule] = TypeAdapter(Rule)
_BY_KIND: dict[str, type[_Rule]] = {
    model.model_fields["kind"].annotation.__args__[0]: model
    for model in get_args(get_args(Rule)[0])
}


# ---------------------------------------------------------------------------------------
# What a rule reads: a family's events, or an aggregate's results


@dataclass(frozen=True)
class FamilySource:
    """A family narrowed by the rule's filter (a `FieldScope` of models.aggregates)."""

    family: str
    filter: Mapping[str, Condition]

    def narrowed(self, conditions: Mapping[str, Condition]) -> FamilySource:
        # A numerator or `first` filter that pins `type`/`kind` narrows its own paths.
        return FamilySource(self.family, {**self.filter, **conditions})

    def path_problems(self, at: Loc, path: str, numeric: bool = False) -> list[tuple[Loc, str]]:
        found = field_type(self, path)
        if isinstance(found, str):
            return [(at, found)]
        if not found.scalar:
            return [(at, f"{path!r} is an object, not a value")]
        if numeric and (found.is_list or not _numeric(found)):
            return [(at, f"{path!r} is not numeric")]
        return []


def _numeric(found: FieldType) -> bool:
    return found.kinds <= {"number", "any"}


@dataclass(frozen=True)
class AggregateOutput:
    """What an aggregate writes to `ioc.aggregates`: its group labels and statistics."""

    name: str
    family: str
    group: tuple[str, ...]
    #: statistic name → whether it is a number (`band`, a `last` of text: not)
    statistics: Mapping[str, bool] = field(default_factory=dict)


Source = FamilySource | AggregateOutput | None

#: The derived aggregates of docs/AGGREGATES.md, declared in no pack.
AQI_AGGREGATE: Final = "aqi_station_1h"
BACKLOG_AGGREGATE: Final = "case_backlog"
_POLLUTANTS: Final = ("pm25", "pm10", "o3", "no2", "so2", "co")
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
    # Imported here: the derivation's conditions live with the window stage.
    from streams.core.windows.hourly_aqi import DERIVED, SOURCE, unsuitable

    declared = list(aggregates)
    outputs = {aggregate.name: _declared_output(aggregate) for aggregate in declared}
    outputs.setdefault(BACKLOG_AGGREGATE, _BACKLOG)
    hourly = next((a for a in declared if a.name == SOURCE), None)
    if DERIVED not in outputs and hourly is not None and unsuitable(hourly) is None:
        outputs[DERIVED] = AggregateOutput(DERIVED, hourly.family, hourly.group_by, _AQI_STATISTICS)
    return outputs


# ---------------------------------------------------------------------------------------
# Checks against the source


def check_rule(rule: _Rule, outputs: Mapping[str, AggregateOutput] | None) -> list[tuple[Loc, str]]:
    """Problems of a structurally valid rule: (location, message) pairs. With `outputs`
    None (validated outside `load_rules`), aggregate rules are not checked against it."""
    problems, source = _source(rule, outputs)
    if isinstance(source, FamilySource):
        problems += check_filter(source, rule.filter)
        for index, path in enumerate(rule.group_by):
            problems += source.path_problems(("group_by", index), path)
    elif isinstance(source, AggregateOutput):
        problems += _group_problems(rule, source)
    problems += _unique(rule.group_by, "group_by")
    problems += rule.own_problems(source)
    problems += _label_problems(rule)
    problems += _template_problems(rule)
    return problems


def _source(
    rule: _Rule, outputs: Mapping[str, AggregateOutput] | None
) -> tuple[list[tuple[Loc, str]], Source]:
    kind = type(rule).model_fields["kind"].annotation.__args__[0]  # type: ignore[union-attr]
    allowed = SOURCES[kind]
    if rule.family is not None and rule.aggregate is not None:
        return [(("aggregate",), "give family or aggregate, not both")], None
    if rule.family is None and rule.aggregate is None:
        what = " or ".join(allowed)
        return [(("family",), f"{kind} rules need a source: give {what}")], None
    given = "family" if rule.family is not None else "aggregate"
    if given not in allowed:
        reads = "raw events" if allowed == ("family",) else "an aggregate's results"
        return [((given,), f"{kind} rules read {reads}: give {allowed[0]}, not {given}")], None
    if rule.family is not None:
        return [], FamilySource(rule.family, rule.filter)
    if outputs is None:
        return [], None
    assert rule.aggregate is not None
    output = outputs.get(rule.aggregate)
    if output is None:
        close = difflib.get_close_matches(rule.aggregate, list(outputs), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(outputs)}"
        return [(("aggregate",), f"unknown aggregate {rule.aggregate!r}{hint}")], None
    problems: list[tuple[Loc, str]] = []
    if "group_by" not in rule.model_fields_set:
        # Explicit, because [] (one global group: the sum over all groups) is a valid choice.
        problems.append(
            (("group_by",), f"required for aggregate rules; {output.name}'s group is"
             f" [{', '.join(output.group)}]")
        )  # fmt: skip
    return problems, output


def _group_problems(rule: _Rule, output: AggregateOutput) -> list[tuple[Loc, str]]:
    labels = ", ".join(output.group) or "none"
    problems: list[tuple[Loc, str]] = [
        (("filter", path), f"{path!r} is not a group label of {output.name} (labels: {labels})")
        for path in rule.filter
        if path not in output.group
    ]
    problems += [
        (("group_by", index), f"{path!r} is not a group label of {output.name} (labels: {labels})")
        for index, path in enumerate(rule.group_by)
        if path not in output.group
    ]
    return problems


def _value_or_statistic(
    rule: ThresholdRule | RateRule | BaselineRule, source: Source
) -> list[tuple[Loc, str]]:
    """`value` must be a numeric field of a family rule; `statistic` a numeric statistic of
    an aggregate rule."""
    value = getattr(rule, "value", None)
    statistic = getattr(rule, "statistic", None)
    if rule.family is not None:
        if statistic is not None:
            return [(("statistic",), "only for aggregate rules; give value: FIELD")]
        if value is None:
            return [(("value",), "required for family rules (the field to compare)")]
        if isinstance(source, FamilySource):
            return source.path_problems(("value",), value, numeric=True)
        return []
    if value is not None:
        return [(("value",), "only for family rules; give statistic: NAME")]
    if statistic is None:
        return [(("statistic",), "required for aggregate rules")]
    if not isinstance(source, AggregateOutput):
        return []
    if statistic not in source.statistics:
        known = list(source.statistics)
        close = difflib.get_close_matches(statistic, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(known)
        return [(("statistic",), f"{source.name} has no statistic {statistic!r}; {hint}")]
    if not source.statistics[statistic]:
        return [(("statistic",), f"{statistic!r} of {source.name} is not a number")]
    return []


def _hysteresis(
    at: Loc, level: Any, clear: Any, clear_key: str, higher: bool
) -> list[tuple[Loc, str]]:
    if not _both_numbers(level, clear):
        return []
    if higher and clear < level:
        return [((*at, clear_key), f"{clear} is below the level {level}; it must not be")]
    if not higher and clear > level:
        return [((*at, clear_key), f"{clear} is above the level {level}; it must not be")]
    return []


def _both_numbers(*values: Any) -> bool:
    return all(isinstance(value, int | float) for value in values)


def _band_order(bands: Sequence[Band]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for index, band in enumerate(bands):
        problems += _hysteresis(
            ("bands", index), band.above, band.clear_below, "clear_below", False
        )
        if index == 0:
            continue
        before = bands[index - 1]
        if _both_numbers(before.above, band.above) and band.above <= before.above:  # type: ignore[operator]
            problems.append(
                (("bands", index, "above"),
                 f"{band.above} is not above the previous band's {before.above}:"
                 " bands go in strictly increasing order")
            )  # fmt: skip
        if SEVERITIES.index(band.severity) < SEVERITIES.index(before.severity):
            problems.append(
                (("bands", index, "severity"),
                 f"{band.severity} is lower than the previous band's {before.severity}")
            )  # fmt: skip
    labels = [band.label for band in bands if band.label is not None]
    if labels and len(labels) != len(bands):
        problems.append((("bands",), "give every band a label, or none"))
    problems += _unique(tuple(labels), "bands")
    return problems


def _level_field(source: Source, at: Loc, level: FieldRef) -> list[tuple[Loc, str]]:
    if isinstance(source, AggregateOutput):
        return [((*at, "field"), "a field level is only for family rules")]
    if isinstance(source, FamilySource):
        return source.path_problems((*at, "field"), level.field, numeric=True)
    return []


def _unique(values: tuple[str, ...], key: str) -> list[tuple[Loc, str]]:
    return [
        ((key, index), f"{value!r} is listed twice")
        for index, value in enumerate(values)
        if value in values[:index]
    ]


def _label_problems(rule: _Rule) -> list[tuple[Loc, str]]:
    taken = {*RESERVED_LABELS, *rule.group_by}
    if isinstance(rule, ThresholdRule) and any(band.label for band in rule.bands or ()):
        taken.add("band")
    return [
        (("labels", name), "the alert sets this label itself; choose another name")
        for name in rule.labels
        if name in taken
    ]


def _template_problems(rule: _Rule) -> list[tuple[Loc, str]]:
    known = rule.template_names()
    problems: list[tuple[Loc, str]] = []
    for language in ("vi", "en"):
        at: Loc = ("summary", language)
        try:
            names = placeholders(getattr(rule.summary, language))
        except ValueError as exc:
            problems.append((at, str(exc)))
            continue
        for name in names:
            if name not in known:
                choices = ", ".join(sorted(known))
                problems.append((at, f"unknown placeholder {{{name}}}; known: {choices}"))
    return problems


# ---------------------------------------------------------------------------------------
# Loading with line numbers

_NESTED: dict[str, type[BaseModel]] = {"bands": Band, "flap": Flap, "summary": Summary}
_FILTERS = ("filter", "numerator", "first", "then")
_OPERATORS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists")


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _message(error: Any, loc: Loc, model: type[_Rule] | None) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        if len(loc) == 1 and model is not None:
            expected = [key for key in _keys(model) if key != "kind"]
            return f"unknown key for {model.__name__}; expected one of " + ", ".join(expected)
        if loc[0] in _FILTERS and len(loc) == 3:
            return "unknown key; expected one of " + ", ".join(_OPERATORS)
        if loc[0] in _NESTED:
            return "unknown key; expected one of " + ", ".join(_keys(_NESTED[str(loc[0])]))
        return "unknown key"
    if kind == "missing":
        return "required"
    if kind == "union_tag_invalid":
        return f"unknown kind {error['input'].get('kind')!r}; expected one of " + ", ".join(KINDS)
    if kind == "union_tag_not_found":
        return "required; one of " + ", ".join(KINDS)
    message: str = error["msg"]
    return message[:1].lower() + message[1:]


def _errors(raw: Any, exc: ValidationError) -> list[tuple[Loc, str]]:
    """Pydantic errors as (location, message), the union's tag taken off the location."""
    if not isinstance(raw, dict):
        return [((), "rule: expected a mapping")]
    model = _BY_KIND.get(str(raw.get("kind")))
    out: list[tuple[Loc, str]] = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(error["loc"])
        if error["type"].startswith("union_tag"):
            loc = ("kind",)
        elif loc and loc[0] == raw.get("kind"):
            loc = loc[1:]
        out.append((loc, f"{dotted(loc) or 'rule'}: {_message(error, loc, model)}"))
    return out


_STAND_INS: dict[str, Any] = {
    "name": "x", "summary": {"vi": "", "en": ""}, "window": 1, "after": 1, "within": 1,
    "gte": 1, "field": "x", "value": "x", "statistic": "x", "sigmas": 1,
    "numerator": {}, "first": {}, "then": {},
}  # fmt: skip


def _check_what_is_valid(
    raw: Any, exc: ValidationError, outputs: Mapping[str, AggregateOutput]
) -> list[tuple[Loc, str]]:
    """The source and field problems of a rule that also has structural ones: checked
    with the broken parts replaced by stand-ins (whose own problems are dropped), so that
    one run of the loader shows them all."""
    model = _BY_KIND.get(str(raw.get("kind"))) if isinstance(raw, dict) else None
    if model is None:
        return []
    broken = {error["loc"][1] for error in exc.errors() if len(error["loc"]) > 1}
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    kept = {k: v for k, v in raw.items() if k in fields and k not in broken}
    stand_in = {
        key: _STAND_INS[key]
        for key, info in fields.items()
        if key not in kept and info.is_required() and key in _STAND_INS
    }
    checks: list[tuple[Loc, str]] = []
    try:
        model.model_validate(kept | stand_in, context={"problems": checks, "aggregates": outputs})
    except ValidationError:
        return []
    replaced = broken | set(stand_in)
    return [(loc, message) for loc, message in checks if not loc or loc[0] not in replaced]


def load_rules(path: Path, aggregates: Sequence[Aggregate] | None = None) -> list[Rule]:
    """Rules from a YAML file, checked against the event models and `aggregates` (the
    declared aggregates; the default pack's when None) with the derived ones they give.
    `RuleConfigError` lists every problem found."""
    path = Path(path)
    if aggregates is None:
        aggregates = default_aggregates()
    outputs = aggregate_outputs(aggregates)

    def at(node: yaml.Node) -> str:
        return f"{path}:{node.start_mark.line + 1}"

    raw_items, items, problems = read_list_document(path, "rules", RuleConfigError)
    rules: list[Rule] = []
    first: dict[str, yaml.Node] = {}  # name → its rule's node
    for index, (raw, node) in enumerate(zip(raw_items, items.value, strict=True)):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = f"rule {name!r}" if isinstance(name, str) else f"rule #{index + 1}"
        found: list[tuple[int, str]] = []  # (line, problem) of this rule

        def report(
            loc: Loc, message: str, node: yaml.Node = node, label: str = label, found: list = found
        ) -> None:
            where = node_at(node, loc)
            found.append((where.start_mark.line, f"{at(where)}: {label}: {message}"))

        duplicates: list[tuple[yaml.Node, str]] = []
        duplicate_keys(node, duplicates)
        for key, message in duplicates:
            found.append((key.start_mark.line, f"{at(key)}: {label}: {message}"))
        if isinstance(name, str):
            if name in first:
                line = first[name].start_mark.line + 1
                report(("name",), f"name: used twice (first at line {line})")
            else:
                first[name] = node
        checks: list[tuple[Loc, str]] = []
        try:
            rule = _RULE.validate_python(raw, context={"problems": checks, "aggregates": outputs})
        except ValidationError as exc:
            for loc, message in _errors(raw, exc):
                report(loc, message)
            checks = _check_what_is_valid(raw, exc, outputs)
        for loc, message in checks:
            report(loc, f"{dotted(loc)}: {message}")
        if found:
            problems += [message for _, message in sorted(found, key=lambda item: item[0])]
        else:
            rules.append(rule)
    if problems:
        raise RuleConfigError(problems)
    return rules


def default_rules(aggregates: Sequence[Aggregate] | None = None) -> list[Rule]:
    """The shipped pack for the reference province.

    With `aggregates` other than the default pack's, the pack's rules on an aggregate
    they do not declare are left out: a deployment with its own aggregates file and no
    rules file keeps every default rule that can run (an explicit rules file stays
    strict: `load_rules`). The others are checked against `aggregates` as usual.
    """
    rules = load_rules(DEFAULT_RULES_PACK)
    if aggregates is None:
        return rules
    outputs = aggregate_outputs(aggregates)
    kept = [rule for rule in rules if rule.aggregate is None or rule.aggregate in outputs]
    problems = [
        f"{DEFAULT_RULES_PACK}: rule {rule.name!r}: {dotted(loc)}: {message}"
        for rule in kept
        for loc, message in check_rule(rule, outputs)
    ]
    if problems:
        raise RuleConfigError(problems)
    return kept
