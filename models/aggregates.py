"""Aggregates declared as data, and the window results they produce.

An aggregates file is YAML with one top-level key, `aggregates`, a list of:

    - name: air_station_5m            # [a-z][a-z0-9_]*, unique in the file
      family: city                    # city | services | security
      description: PM means per station, for the wall display
      filter:                         # field path → scalar (equals) or operators
        type: AirQualityObserved
        pm25: {gte: 0, lt: 1000}      # eq ne in not_in gt gte lt lte exists
      group_by: [refDevice, areaServed]   # [] = one global group
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

Windows start at `offset + k * step` ms since the epoch (`step` = `size` when absent:
tumbling). `offset: -7h` aligns daily windows to midnight in Việt Nam (UTC+7).
A window [start, end) closes when its partition's watermark reaches end + grace.

`load_aggregates` reports every problem of a file at once, one per line:
`<file>:<line>: aggregate '<name>': <field>: <message>`.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Protocol, get_args, get_origin

import orjson
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from models import FAMILIES

__all__ = [
    "DISCRIMINATORS",
    "PERCENTILES",
    "STATISTICS",
    "TIME_FIELDS",
    "Aggregate",
    "AggregateConfigError",
    "Condition",
    "ConfigError",
    "Emit",
    "Family",
    "FieldScope",
    "FieldType",
    "Loc",
    "Statistic",
    "Window",
    "WindowResult",
    "check_filter",
    "dotted",
    "duplicate_keys",
    "field_type",
    "load_aggregates",
    "node_at",
    "parse_duration",
    "read_list_document",
    "rfc3339",
]

Family = Literal["city", "services", "security"]
Statistic = Literal[
    "count", "sum", "min", "max", "mean", "last", "distinct", "p50", "p90", "p95", "p99"
]
STATISTICS: tuple[str, ...] = get_args(Statistic)
PERCENTILES: dict[str, float] = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
#: Statistics that need numbers (a boolean counts as 1/0: the mean of a flag is a share).
NUMERIC_STATISTICS = frozenset({"sum", "min", "max", "mean", *PERCENTILES})

#: Where each family's validated event carries its event time (RFC 3339 UTC, "…Z").
TIME_FIELDS: dict[str, str] = {
    "city": "dateObserved",
    "services": "occurred_at",
    "security": "@timestamp",
}
#: The field that picks the event model within a family.
DISCRIMINATORS: dict[str, str] = {"city": "type", "services": "kind"}


class ConfigError(ValueError):
    """A declaration file is invalid; the message lists every problem, one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class AggregateConfigError(ConfigError):
    """An aggregates file is invalid; the message lists every problem, one per line."""


# ---------------------------------------------------------------------------------------
# Durations

_DURATION = re.compile(r"^(-?)(\d+)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(value: Any) -> int:
    """`500ms 30s 5m 1h 1d` (or an integer of milliseconds) → int milliseconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h or integer milliseconds")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (match := _DURATION.match(value.strip())):
        sign, number, unit = match.groups()
        return (-1 if sign else 1) * int(number) * _UNIT_MS[unit]
    raise ValueError(
        f"{value!r} is not a duration; write e.g. 500ms, 30s, 5m, 1h, 1d or integer milliseconds"
    )


def _duration(value: Any) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from None


Duration = Annotated[int, BeforeValidator(_duration)]
PositiveDuration = Annotated[Duration, Field(gt=0)]
NonNegativeDuration = Annotated[Duration, Field(ge=0)]


# ---------------------------------------------------------------------------------------
# The declaration


def _scalar(value: Any) -> Any:
    if not isinstance(value, str | int | float) or value != value:  # NaN never matches
        raise PydanticCustomError(
            "scalar", "expected a string, number or boolean, got {kind}",
            {"kind": type(value).__name__},
        )  # fmt: skip
    return value


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise PydanticCustomError(
            "number", "expected a number, got {kind}", {"kind": type(value).__name__}
        )
    return value


# One plain check each, so that a wrong operand gives one message, not one per union member.
Scalar = Annotated[str | int | float | bool, PlainValidator(_scalar)]
Number = Annotated[int | float, PlainValidator(_number)]
_OPERATORS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists")


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Condition(_Config):
    """Operators on one field; all given must hold. A bare scalar in YAML means `eq`."""

    eq: Scalar | None = None
    ne: Scalar | None = None
    in_: tuple[Scalar, ...] | None = Field(None, alias="in", min_length=1)
    not_in: tuple[Scalar, ...] | None = Field(None, min_length=1)
    gt: Number | None = None
    gte: Number | None = None
    lt: Number | None = None
    lte: Number | None = None
    exists: StrictBool | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar_means_equals(cls, data: Any) -> Any:
        if isinstance(data, list):
            raise PydanticCustomError(
                "condition", "a list is ambiguous here: write {in: [...]} for one of several values"
            )
        if data is None:
            raise PydanticCustomError("condition", "null is not a value; use {exists: false}")
        return data if isinstance(data, Mapping | Condition) else {"eq": data}

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if not self.operators():
            raise PydanticCustomError(
                "condition", "no operator; expected one of " + ", ".join(_OPERATORS)
            )
        return self

    def operators(self) -> dict[str, Any]:
        """The operators given, by their YAML names."""
        return self.model_dump(by_alias=True, exclude_none=True)


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
        decisive = self.model_dump(mode="json", by_alias=True, exclude={"description", "emit"})
        digest = hashlib.blake2b(orjson.dumps(decisive, option=orjson.OPT_SORT_KEYS), digest_size=4)
        return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Field paths against the family's models


@dataclass(frozen=True)
class FieldType:
    """What a field path holds, merged over the models that have it."""

    kinds: frozenset[str]  # number bool str time object mapping any
    is_list: bool = False
    literals: frozenset[Any] | None = None  # the allowed values, when every model fixes them

    @property
    def scalar(self) -> bool:
        return not self.kinds & {"object", "mapping"}


def _atoms(annotation: Any) -> Iterator[tuple[str, Any]]:
    """(kind, detail) for each alternative of a field annotation, None left out."""
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _atoms(get_args(annotation)[0])
    elif origin is typing.Union or origin is types.UnionType:
        for arg in get_args(annotation):
            yield from _atoms(arg)
    elif annotation is type(None):
        return
    elif origin is Literal:
        yield "literal", get_args(annotation)
    elif origin in (list, tuple, set, frozenset):
        yield "list", get_args(annotation)[0] if get_args(annotation) else Any
    elif origin is dict or annotation is dict:
        yield "mapping", None
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield "model", annotation
    elif annotation is bool:
        yield "bool", None
    elif annotation in (int, float):
        yield "number", None
    elif annotation is str:
        yield "str", None
    elif annotation is datetime:
        yield "time", None
    else:
        yield "any", None


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """Field name as serialised (alias first) → annotation, computed fields included."""
    out = {(info.alias or name): info.annotation for name, info in model.model_fields.items()}
    for name, computed in model.model_computed_fields.items():
        out[computed.alias or name] = computed.return_type
    return out


def _resolve(model: type[BaseModel], parts: list[str]) -> list[tuple[str, Any]] | str:
    """The atoms at `parts` inside `model`, or why the path does not exist."""
    atoms: list[tuple[str, Any]] = [("model", model)]
    for depth, part in enumerate(parts):
        found: list[tuple[str, Any]] = []
        for kind, detail in atoms:
            if kind == "model":
                annotation = _fields(detail).get(part)
                if annotation is not None:
                    found += list(_atoms(annotation))
            elif kind in ("mapping", "any"):
                found.append(("any", None))  # a free mapping: any key may be there
        if not found:
            if depth and not any(kind in ("model", "mapping", "any") for kind, _ in atoms):
                return f"{'.'.join(parts[:depth])} is not an object"
            return "unknown field"
        atoms = found
    return atoms


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return "str" if isinstance(value, str) else "number"


def _field_type(atoms: list[tuple[str, Any]]) -> FieldType:
    kinds: set[str] = set()
    literals: set[Any] = set()
    is_list = False
    all_literal = True
    for kind, detail in atoms:
        if kind == "list":
            is_list = True
            inner = list(_atoms(detail))
            kind, detail = inner[0] if len(inner) == 1 else ("any", None)
        if kind == "literal":
            literals.update(detail)
            kinds.update(_kind_of(v) for v in detail)
            continue
        all_literal = False
        kinds.add("object" if kind == "model" else kind)
    return FieldType(frozenset(kinds), is_list, frozenset(literals) if all_literal else None)


def _paths(model: type[BaseModel], prefix: str = "", depth: int = 0) -> Iterator[str]:
    for name, annotation in _fields(model).items():
        yield prefix + name
        for kind, detail in _atoms(annotation):
            if kind == "model" and depth < 3:
                yield from _paths(detail, f"{prefix}{name}.", depth + 1)


class FieldScope(Protocol):
    """Where field paths are looked up: a family, narrowed by a filter on its discriminator
    (an `Aggregate`, or a rule's family and filter)."""

    @property
    def family(self) -> str: ...

    @property
    def filter(self) -> Mapping[str, Condition]: ...


def _pinned_models(scope: FieldScope) -> tuple[tuple[type[BaseModel], ...], set[Any]]:
    """The family's models, narrowed by a filter on the discriminator (`type`, `kind`)."""
    models = FAMILIES[scope.family].models
    discriminator = DISCRIMINATORS.get(scope.family)
    condition = scope.filter.get(discriminator) if discriminator else None
    if condition is None:
        return models, set()
    wanted = {condition.eq} if condition.eq is not None else set(condition.in_ or ())
    if not wanted:
        return models, set()
    pinned = tuple(
        model
        for model in models
        if any(
            kind == "literal" and set(detail) & wanted
            for kind, detail in _atoms(_fields(model)[discriminator])  # type: ignore[index]
        )
    )
    return (pinned or models), wanted


def field_type(scope: FieldScope, path: str) -> FieldType | str:
    """The type of `path` in the scope's events, or a message saying why it is invalid."""
    models, _ = _pinned_models(scope)
    parts = path.split(".") if path != "@timestamp" else [path]
    atoms: list[tuple[str, Any]] = []
    why = "unknown field"
    for model in models:
        found = _resolve(model, parts)
        if isinstance(found, str):
            why = found if why == "unknown field" else why
        else:
            atoms += found
    if atoms:
        return _field_type(atoms)
    if why != "unknown field":
        return why
    events = " or ".join(m.__name__ for m in models) if len(models) < 3 else scope.family
    message = f"unknown field {path!r} for {events} events"
    known = sorted({p for model in models for p in _paths(model)})
    close = difflib.get_close_matches(path, known, n=1)
    return message + (f"; did you mean {close[0]!r}?" if close else "")


Loc = tuple[str | int, ...]


def _value_fits(value: Any, kinds: frozenset[str]) -> bool:
    if "any" in kinds:
        return True
    if isinstance(value, bool):
        return "bool" in kinds
    if isinstance(value, int | float):
        return "number" in kinds
    return bool(kinds & {"str", "time"})


def check_filter(
    scope: FieldScope, conditions: Mapping[str, Condition], at: Loc = ("filter",)
) -> list[tuple[Loc, str]]:
    """Problems with a filter's paths and operands in `scope`: (location, message) pairs."""
    problems: list[tuple[Loc, str]] = []
    for path, condition in conditions.items():
        found = field_type(scope, path)
        if isinstance(found, str):
            problems.append(((*at, path), found))
            continue
        for op, operand in condition.operators().items():
            loc: Loc = (*at, path, op)
            if op == "exists":
                continue
            if not found.scalar:
                problems.append((loc, "cannot compare an object; use exists"))
            elif op in ("gt", "gte", "lt", "lte"):
                if found.is_list or not found.kinds & {"number", "any"}:
                    problems.append((loc, "comparisons need a numeric field"))
            else:
                operands = operand if isinstance(operand, tuple | list) else [operand]
                for item in operands:
                    if found.literals is not None and item not in found.literals:
                        allowed = ", ".join(sorted(map(str, found.literals)))
                        problems.append(
                            (loc, f"{item!r} is not a possible value; one of {allowed}")
                        )
                        break
                    if not _value_fits(item, found.kinds):
                        kinds = "/".join(sorted(found.kinds))
                        problems.append((loc, f"{item!r} cannot match a {kinds} field"))
                        break
    return problems


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


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---------------------------------------------------------------------------------------
# Loading with line numbers

_MODELS_AT: dict[str, type[BaseModel]] = {"window": Window, "emit": Emit}


def node_at(node: yaml.Node, loc: Loc) -> yaml.Node:
    """The deepest YAML node along `loc`; the key's node when `loc` ends at a key."""
    for depth, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    node = key if depth == len(loc) - 1 else value
                    break
            else:
                return node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def _message(error: Any, loc: Loc) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        if len(loc) == 1:
            expected = list(Aggregate.model_fields)
        elif loc[0] in _MODELS_AT:
            expected = list(_MODELS_AT[str(loc[0])].model_fields)
        elif loc[0] == "filter":
            expected = list(_OPERATORS)
        else:
            return "unknown key"
        return "unknown key; expected one of " + ", ".join(expected)
    if kind == "missing":
        return "required"
    message: str = error["msg"]
    return message[:1].lower() + message[1:]


def duplicate_keys(node: yaml.Node, problems: list[tuple[yaml.Node, str]]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            if key.value in seen:
                problems.append((key, f"{key.value}: given twice"))
            seen.add(key.value)
            duplicate_keys(value, problems)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            duplicate_keys(item, problems)


def read_list_document(
    path: Path, key: str, error: type[ConfigError]
) -> tuple[list[Any], yaml.SequenceNode, list[str]]:
    """A YAML file whose top is `{key: [...]}`: the items, their nodes (for line numbers)
    and the problems with the top level. Raises `error` when there is no such list."""

    def at(node: yaml.Node | None) -> str:
        return f"{path}:{node.start_mark.line + 1}" if node is not None else str(path)

    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise error([f"{where}: not valid YAML: {exc}"]) from None

    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        article = "an" if key[0] in "aeiou" else "a"
        raise error([f"{at(root)}: expected a mapping with {article} `{key}` list at the top"])
    assert isinstance(root, yaml.MappingNode)
    problems = [
        f"{at(node)}: {node.value}: unknown key; expected {key}"
        for node, _ in root.value
        if node.value != key
    ]
    items = next(value for node, value in root.value if node.value == key)
    assert isinstance(items, yaml.SequenceNode)
    return data[key], items, problems


def load_aggregates(path: Path) -> list[Aggregate]:
    """Aggregates from a YAML file; `AggregateConfigError` lists every problem found."""
    path = Path(path)

    def at(node: yaml.Node) -> str:
        return f"{path}:{node.start_mark.line + 1}"

    raw_items, items, problems = read_list_document(path, "aggregates", AggregateConfigError)
    aggregates: list[Aggregate] = []
    first: dict[str, yaml.Node] = {}  # name → its aggregate's node
    for index, (raw, node) in enumerate(zip(raw_items, items.value, strict=True)):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = f"aggregate {name!r}" if isinstance(name, str) else f"aggregate #{index + 1}"

        found: list[tuple[int, str]] = []  # (line, problem) of this aggregate

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
            aggregate = Aggregate.model_validate(raw, context={"problems": checks})
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc = tuple(error["loc"])
                report(loc, f"{dotted(loc) or 'aggregate'}: {_message(error, loc)}")
            checks = _check_what_is_valid(raw, exc)
        for loc, message in checks:
            report(loc, f"{dotted(loc)}: {message}")
        if found:
            problems += [message for _, message in sorted(found, key=lambda item: item[0])]
        else:
            aggregates.append(aggregate)
    if problems:
        raise AggregateConfigError(problems)
    return aggregates


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


# ---------------------------------------------------------------------------------------
# The result record

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339(ms: int) -> str:
    """Epoch milliseconds → `2026-11-26T03:05:00Z` (milliseconds shown when not zero)."""
    when = _EPOCH + timedelta(milliseconds=ms)
    text = when.isoformat(timespec="seconds" if ms % 1000 == 0 else "milliseconds")
    return text.replace("+00:00", "Z")


def _identity_part(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text.replace("%", "%25").replace("|", "%7C")


@dataclass(frozen=True, slots=True)
class WindowResult:
    """One window's figures: the record of topic `ioc.aggregates`.

    Kafka key: `identity`. Value (`to_json`), for example:

        {"identity": "air_station_5m|HD-AQ-017|TP Hải Dương|1795662000000",
         "aggregate": "air_station_5m", "family": "city",
         "group": {"refDevice": "HD-AQ-017", "areaServed": "TP Hải Dương"},
         "window_start": "2026-11-26T03:00:00Z", "window_end": "2026-11-26T03:05:00Z",
         "window_start_ms": 1795662000000, "window_end_ms": 1795662300000,
         "count": 5, "final": true,
         "statistics": {"count": 5, "pm25_count": 5, "pm25_mean": 61.2, "pm25_max": 70.1}}

    - `group`: the group_by field paths and this group's values ({} for a global group).
    - `count`: events of the group in the window; `statistics["count"]` repeats it.
    - `statistics["<value>_<stat>"]` for each value field and statistic; with `count`
      listed, `<value>_count` is the number of events that carried the value (the
      denominator of its mean). A value no event carried gives null (0 for `_count`
      and `_distinct`). `_mean` of a boolean is the share of true.
      `_p50/_p90/_p95/_p99` are estimates within 1 % relative error (see
      streams.core.windows.statistics).
    - `final`: false for a running update of a still open window, true for the one
      final result sent when the window closes. Running updates and the final share
      the identity, so a compacted topic keeps the final.
    - `identity`: `<aggregate>|<group values joined by |>|<window_start_ms>` (the
      middle part empty for a global group); group values are written as text
      (non-strings as JSON) with `%` and `|` percent-encoded.
      Deterministic, so a replay after a crash overwrites instead of duplicating.
    - Derived: `aqi_station_1h`, the hourly VN_AQI per station (Decision 1459/QĐ-TCMT),
      is declared in no pack but computed from each final of `air_station_1h`
      (streams.core.windows.hourly_aqi): same family, group and window, always final, `count` the
      hour's; `statistics` are `aqi`, `dominant`, `band`, `band_vi`, a sub-index
      `aqi_<pollutant>` for pm25 pm10 o3 no2 so2 co (null when not computable) and the
      NowCast concentrations `nowcast_pm25`, `nowcast_pm10` (docs/AGGREGATES.md).
    """

    aggregate: str
    family: str
    group: dict[str, Any]
    window_start: int
    window_end: int
    statistics: dict[str, Any]
    count: int
    final: bool

    @property
    def identity(self) -> str:
        group = "|".join(map(_identity_part, self.group.values()))
        return f"{self.aggregate}|{group}|{self.window_start}"

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "identity": self.identity,
                "aggregate": self.aggregate,
                "family": self.family,
                "group": self.group,
                "window_start": rfc3339(self.window_start),
                "window_end": rfc3339(self.window_end),
                "window_start_ms": self.window_start,
                "window_end_ms": self.window_end,
                "count": self.count,
                "final": self.final,
                "statistics": self.statistics,
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> WindowResult:
        record = orjson.loads(data)
        return cls(
            aggregate=record["aggregate"],
            family=record["family"],
            group=record["group"],
            window_start=record["window_start_ms"],
            window_end=record["window_end_ms"],
            statistics=record["statistics"],
            count=record["count"],
            final=record["final"],
        )
