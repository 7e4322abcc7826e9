"""The checks of a rule against what it reads, and those every kind shares.

A rule reads a family's events (`FamilySource`: its filter, group_by, value and
field levels must be fields of the family's models, models.fields) or an
aggregate's results (`AggregateOutput`, models.derived: its filter and group_by must
be group labels, its statistic a numeric statistic of that aggregate). Every kind
also has its labels and summary templates checked here. `check_rule` runs it all on
a structurally valid rule: the rule models call it as they validate (models.rules),
and so does the loader (models.rulefile) with the pack's aggregate outputs.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

from models.configfile import Loc
from models.derived import AggregateOutput
from models.fields import Condition, FieldType, check_filter, field_type
from models.templates import placeholders

__all__ = [
    "CheckedRule",
    "FamilySource",
    "Source",
    "check_rule",
    "level_field",
    "listed_twice",
    "value_or_statistic",
]


class _Summary(Protocol):
    @property
    def vi(self) -> str: ...

    @property
    def en(self) -> str: ...


class CheckedRule(Protocol):
    """What the checks read of a rule: the part every kind of models.rules has."""

    #: Where the kind may read from: `family`, `aggregate` or both (docs/RULES.md, "Kinds").
    reads: ClassVar[tuple[str, ...]]

    @property
    def kind(self) -> str: ...

    @property
    def family(self) -> str | None: ...

    @property
    def aggregate(self) -> str | None: ...

    @property
    def filter(self) -> Mapping[str, Condition]: ...

    @property
    def group_by(self) -> tuple[str, ...]: ...

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def summary(self) -> _Summary: ...

    @property
    def model_fields_set(self) -> set[str]: ...

    def own_problems(self, source: Source) -> list[tuple[Loc, str]]:
        """The kind's own checks; `source` is None when the aggregate is not known."""
        ...

    def template_names(self) -> set[str]:
        """Placeholders the summary may use."""
        ...

    def reserved_labels(self) -> set[str]:
        """Labels the alert sets itself, which `labels` may not give."""
        ...


# ---------------------------------------------------------------------------------------
# What a rule reads: a family's events, or an aggregate's results


@dataclass(frozen=True)
class FamilySource:
    """A family narrowed by the rule's filter (a `FieldScope` of models.fields)."""

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


Source = FamilySource | AggregateOutput | None


# ---------------------------------------------------------------------------------------
# Checks against the source


def check_rule(
    rule: CheckedRule, outputs: Mapping[str, AggregateOutput] | None
) -> list[tuple[Loc, str]]:
    """Problems of a structurally valid rule: (location, message) pairs. With `outputs`
    None (validated outside `load_rules`), aggregate rules are not checked against it."""
    problems, source = _source(rule, outputs)
    if isinstance(source, FamilySource):
        problems += check_filter(source, rule.filter)
        for index, path in enumerate(rule.group_by):
            problems += source.path_problems(("group_by", index), path)
    elif isinstance(source, AggregateOutput):
        problems += _group_problems(rule, source)
    problems += listed_twice(rule.group_by, "group_by")
    problems += rule.own_problems(source)
    problems += _label_problems(rule)
    problems += _template_problems(rule)
    return problems


def _source(
    rule: CheckedRule, outputs: Mapping[str, AggregateOutput] | None
) -> tuple[list[tuple[Loc, str]], Source]:
    kind = rule.kind
    allowed = rule.reads
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


def _group_problems(rule: CheckedRule, output: AggregateOutput) -> list[tuple[Loc, str]]:
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


def value_or_statistic(rule: CheckedRule, source: Source) -> list[tuple[Loc, str]]:
    """`value` (threshold, rate) must be a numeric field of a family rule; `statistic`
    (threshold, baseline) a numeric statistic of an aggregate rule."""
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


def level_field(source: Source, at: Loc, path: str) -> list[tuple[Loc, str]]:
    """A threshold read from the event (`above: {field: PATH}`) must be a numeric field."""
    if isinstance(source, AggregateOutput):
        return [((*at, "field"), "a field level is only for family rules")]
    if isinstance(source, FamilySource):
        return source.path_problems((*at, "field"), path, numeric=True)
    return []


def listed_twice(values: tuple[str, ...], key: str) -> list[tuple[Loc, str]]:
    return [
        ((key, index), f"{value!r} is listed twice")
        for index, value in enumerate(values)
        if value in values[:index]
    ]


def _label_problems(rule: CheckedRule) -> list[tuple[Loc, str]]:
    taken = rule.reserved_labels()
    return [
        (("labels", name), "the alert sets this label itself; choose another name")
        for name in rule.labels
        if name in taken
    ]


def _template_problems(rule: CheckedRule) -> list[tuple[Loc, str]]:
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
