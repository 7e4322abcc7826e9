"""Filters on field paths, and the paths checked against a family's event models.

A filter maps a field path to a `Condition`: a bare scalar means `eq`, or operators,
all of which must hold (`OPERATORS`). Field paths name fields of the family's event
models as the validated topic carries them (`@timestamp`, `event.outcome`,
`file.hash.sha256`, the computed `on_time`). `field_type` says what a path holds, or
why it is no field: a path no model of the family has is an error; for city (`type`)
and services (`kind`) a filter that pins the model restricts the paths to that
model's fields. `check_filter` checks a filter's paths and operands.

Used by aggregates (models.aggregates) and rules (models.rulecheck) alike.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal, Protocol, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictBool, model_validator
from pydantic_core import PydanticCustomError

from models.configfile import Loc
from models.families import DISCRIMINATORS, FAMILIES

__all__ = [
    "OPERATORS",
    "Condition",
    "FieldScope",
    "FieldType",
    "Number",
    "Scalar",
    "check_filter",
    "field_type",
]


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


class Condition(BaseModel):
    """Operators on one field; all given must hold. A bare scalar in YAML means `eq`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

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
                "condition", "no operator; expected one of " + ", ".join(OPERATORS)
            )
        return self

    def operators(self) -> dict[str, Any]:
        """The operators given, by their YAML names."""
        return self.model_dump(by_alias=True, exclude_none=True)


#: The operators of a condition, by their YAML names.
OPERATORS: Final[tuple[str, ...]] = tuple(
    info.alias or name for name, info in Condition.model_fields.items()
)


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
