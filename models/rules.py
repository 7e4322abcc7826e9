"""Alert rules declared as data (docs/RULES.md): one model per kind.

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

Field paths, filters and durations are those of aggregates (models.fields,
models.timefmt: the same code checks them). A rule validates itself against what it
reads as it is built (models.rulecheck); `load_rules` (models.rulefile) reports every
problem of a file at once, one per line: `<file>:<line>: rule '<name>': <field>:
<message>`. Summary templates hold plain placeholders only (models.templates).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from models.configfile import Loc, dotted
from models.families import Family
from models.fields import Condition, Number, check_filter
from models.rulecheck import (
    FamilySource,
    Source,
    check_rule,
    level_field,
    listed_twice,
    value_or_statistic,
)
from models.timefmt import Duration

__all__ = [
    "DEFAULT_FORGET_AFTER_MS",
    "KINDS",
    "MAX_SPAN_MS",
    "MODELS_BY_KIND",
    "RULE_ADAPTER",
    "SEVERITIES",
    "AbsenceRule",
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
    "SequenceRule",
    "Severity",
    "SeverityBand",
    "Summary",
    "ThresholdRule",
]

Kind = Literal[
    "threshold", "count", "distinct", "rate", "ratio", "absence", "sequence", "match", "baseline"
]
KINDS: tuple[str, ...] = get_args(Kind)
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)

#: Longest window, `after`, `within`, `for` or `keep_firing_for`: windows live in memory,
#: and a month is already beyond any operational alert.
MAX_SPAN_MS: Final = 31 * 86_400_000

#: How long an absence rule remembers a silent group by default (`forget_after`).
DEFAULT_FORGET_AFTER_MS: Final = 3 * 86_400_000

#: Placeholders every rule's templates may use, besides its group labels and `labels` keys.
ALWAYS_AVAILABLE: Final = ("value", "threshold", "window", "rule", "severity")
#: Labels the alert stage sets itself (docs/RULES.md, "The ioc.alerts record").
RESERVED_LABELS: Final = ("alertname", "severity")


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


class SeverityBand(_Config):
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
    #: Each kind's model narrows it to its name, the tag of the `Rule` union.
    kind: str

    #: Where the kind may read from: `family`, `aggregate` or both (docs/RULES.md, "Kinds").
    reads: ClassVar[tuple[str, ...]] = ("family",)

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

    def reserved_labels(self) -> set[str]:
        """Labels the alert sets itself, which `labels` may not give."""
        return {*RESERVED_LABELS, *self.group_by}


class ThresholdRule(_Rule):
    """Value (family: `value: FIELD`; aggregate: `statistic: NAME`) above or below a level.

    Either `bands` (highest band reached wins), or one `above` (with `clear_below`) or
    `below` (with `clear_above`) at the rule's severity."""

    kind: Literal["threshold"]
    reads: ClassVar[tuple[str, ...]] = ("family", "aggregate")
    value: FieldPath | None = None
    statistic: StrictStr | None = None
    bands: Annotated[tuple[SeverityBand, ...], Field(min_length=1)] | None = None
    above: Level | None = None
    below: Level | None = None
    clear_below: Level | None = None
    clear_above: Level | None = None

    def own_problems(self, source: Source) -> list[tuple[Loc, str]]:
        problems = value_or_statistic(self, source)
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
                problems += level_field(source, at, level.field)
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

    def reserved_labels(self) -> set[str]:
        labelled = any(band.label for band in self.bands or ())
        return super().reserved_labels() | ({"band"} if labelled else set())


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


def _band_order(bands: Sequence[SeverityBand]) -> list[tuple[Loc, str]]:
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
    problems += listed_twice(tuple(labels), "bands")
    return problems


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
        problems = value_or_statistic(self, source)
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
    """No matching event for a group that has been seen, for longer than `after`.

    A group with no event for `forget_after` (longer than `after`; default 3 days) is
    forgotten and its alert resolved: a device that never comes back (or an id a
    producer made up) is not silent for ever."""

    kind: Literal["absence"]
    after: Span
    forget_after: Span = DEFAULT_FORGET_AFTER_MS

    def own_problems(self, source: Source) -> list[tuple[Loc, str]]:
        if self.forget_after <= self.after:
            return [(("forget_after",), "must be longer than after")]
        return []


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
    reads: ClassVar[tuple[str, ...]] = ("aggregate",)
    statistic: StrictStr
    sigmas: PositiveNumber
    min_samples: Annotated[StrictInt, Field(ge=2)] = 7  # σ needs at least two values
    season: Literal["hour_of_day"] = "hour_of_day"

    def own_problems(self, source: Source) -> list[tuple[Loc, str]]:
        return value_or_statistic(self, source)


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
RULE_ADAPTER: TypeAdapter[Rule] = TypeAdapter(Rule)
MODELS_BY_KIND: dict[str, type[_Rule]] = {
    model.model_fields["kind"].annotation.__args__[0]: model
    for model in get_args(get_args(Rule)[0])
}
