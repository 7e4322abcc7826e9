"""Rules files: `load_rules`, and the shipped pack (`default_rules`).

A rules file is checked against the event models and the pack's aggregates with the
derived ones they give (models.derived); `RuleConfigError` lists every problem of a
file at once, one per line: `<file>:<line>: rule '<name>': <field>: <message>`
(models.configfile). docs/RULES.md describes the format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from models.aggregates import Aggregate, default_aggregates
from models.configfile import Loc, dotted, load_declarations, pydantic_message, unknown_key
from models.derived import AggregateOutput, aggregate_outputs
from models.errors import RuleConfigError
from models.fields import OPERATORS
from models.rulecheck import check_rule
from models.rules import (
    KINDS,
    MODELS_BY_KIND,
    RULE_ADAPTER,
    Flap,
    Rule,
    SeverityBand,
    Summary,
)

__all__ = ["DEFAULT_RULES_PACK", "default_rules", "load_rules"]

#: The pack for the reference province (Hải Dương), used when none is configured.
DEFAULT_RULES_PACK: Final = Path(__file__).resolve().parent / "packs" / "rules.yaml"

_NESTED: dict[str, type[BaseModel]] = {"bands": SeverityBand, "flap": Flap, "summary": Summary}
_FILTERS = ("filter", "numerator", "first", "then")


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _message(error: Any, loc: Loc, model: type[BaseModel] | None) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        if len(loc) == 1 and model is not None:
            expected = [key for key in _keys(model) if key != "kind"]
            return f"unknown key for {model.__name__}; expected one of " + ", ".join(expected)
        if loc[0] in _FILTERS and len(loc) == 3:
            return unknown_key(OPERATORS)
        if loc[0] in _NESTED:
            return unknown_key(_keys(_NESTED[str(loc[0])]))
        return unknown_key()
    if kind == "union_tag_invalid":
        return f"unknown kind {error['input'].get('kind')!r}; expected one of " + ", ".join(KINDS)
    if kind == "union_tag_not_found":
        return "required; one of " + ", ".join(KINDS)
    return pydantic_message(error)


def _errors(raw: Any, exc: ValidationError) -> list[tuple[Loc, str]]:
    """Pydantic errors as (location, message), the union's tag taken off the location."""
    if not isinstance(raw, dict):
        return [((), "rule: expected a mapping")]
    model = MODELS_BY_KIND.get(str(raw.get("kind")))
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
    model = MODELS_BY_KIND.get(str(raw.get("kind"))) if isinstance(raw, dict) else None
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


def _validate(
    outputs: Mapping[str, AggregateOutput], raw: Any
) -> tuple[Rule | None, list[tuple[Loc, str]]]:
    """One rule of a file and its problems, each with the location it is at."""
    checks: list[tuple[Loc, str]] = []
    try:
        rule = RULE_ADAPTER.validate_python(
            raw, context={"problems": checks, "aggregates": outputs}
        )
    except ValidationError as exc:
        problems = _errors(raw, exc)
        checks = _check_what_is_valid(raw, exc, outputs)
        return None, problems + [(loc, f"{dotted(loc)}: {message}") for loc, message in checks]
    return rule, [(loc, f"{dotted(loc)}: {message}") for loc, message in checks]


def load_rules(path: Path, aggregates: Sequence[Aggregate] | None = None) -> list[Rule]:
    """Rules from a YAML file, checked against the event models and `aggregates` (the
    declared aggregates; the default pack's when None) with the derived ones they give.
    `RuleConfigError` lists every problem found."""
    if aggregates is None:
        aggregates = default_aggregates()
    outputs = aggregate_outputs(aggregates)
    return load_declarations(path, "rules", RuleConfigError, partial(_validate, outputs))


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
