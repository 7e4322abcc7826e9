"""An aggregate compiled for the per-event path: closures, no pydantic, no datetimes.

`Plan` holds what `WindowEngine.process` needs per aggregate, resolved once at load:
the filter as one `match(event)` closure (None when the dispatch on `type`/`kind`
already decided it), the group key getter, the accumulator layout and the window
arithmetic in int milliseconds.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from typing import Any, Final

from models.aggregates import Aggregate
from models.errors import EventTimeError
from models.families import DISCRIMINATORS
from models.fields import Condition
from models.timefmt import rfc3339_ms
from streams.core.windows.statistics import MAX_DISTINCT_EXACT, Layout

__all__ = [
    "MISSING",
    "TIME_RANGE_MS",
    "UNKNOWN",
    "Plan",
    "event_time_ms",
    "getter",
    "key_function",
    "matcher",
]

#: A group key when a group_by field is absent and the aggregate says
#: `missing_group: reject`: the engine dead-letters the event.
MISSING: Final = object()
#: The group value of an absent group_by field (`missing_group: unknown`, the default).
UNKNOWN: Final = "unknown"
#: Epoch ms of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: the times a datetime,
#: and so an RFC 3339 window bound, can hold.
TIME_RANGE_MS: Final = (-62_135_596_800_000, 253_402_300_799_999)
#: Bumped when the accumulator layout changes, so that old changelog state is not misread.
LAYOUT_VERSION: Final = 1

Event = dict[str, Any]
Getter = Callable[[Event], Any]


def event_time_ms(value: Any) -> int:
    """RFC 3339 with an offset (ingest writes UTC, "…Z") or epoch ms → epoch ms."""
    if type(value) is str:
        try:
            return rfc3339_ms(value)
        except ValueError:
            raise EventTimeError(f"not an RFC 3339 time with an offset: {value!r}") from None
    if type(value) is int:
        return value
    raise EventTimeError(f"expected an RFC 3339 time, got {type(value).__name__}")


def _flat(path: str) -> bool:
    return path == "@timestamp" or "." not in path


def getter(path: str) -> Getter:
    """`event.outcome` → a function reading event["event"]["outcome"], None when absent."""
    if _flat(path):
        name = path

        def get(event: Event) -> Any:
            return event.get(name)

        return get
    first, *rest = path.split(".")
    if len(rest) == 1:
        second = rest[0]

        def get2(event: Event) -> Any:
            inner = event.get(first)
            return inner.get(second) if type(inner) is dict else None

        return get2

    def get_n(event: Event) -> Any:
        value: Any = event.get(first)
        for part in rest:
            if type(value) is not dict:
                return None
            value = value.get(part)
        return value

    return get_n


def _comparison(compare: Callable[[Any, Any], bool], bound: Any) -> Callable[[Any], bool]:
    return lambda v: v is not None and type(v) is not bool and compare(v, bound)


def _test(path: str, condition: Condition) -> Callable[[Event], bool]:
    """One field's condition as a closure; list fields are tested by membership."""
    get = getter(path)
    tests: list[Callable[[Any], bool]] = []
    ops = condition.operators()
    if "eq" in ops:
        eq = ops["eq"]
        tests.append(lambda v: eq in v if type(v) is list else v == eq)
    if "ne" in ops:
        ne = ops["ne"]
        tests.append(lambda v: ne not in v if type(v) is list else v != ne)
    if "in" in ops:
        allowed = frozenset(ops["in"])
        tests.append(
            lambda v: (
                not allowed.isdisjoint(v) if type(v) is list else v is not None and v in allowed
            )
        )
    if "not_in" in ops:
        refused = frozenset(ops["not_in"])
        tests.append(lambda v: refused.isdisjoint(v) if type(v) is list else v not in refused)
    for name, compare in (
        ("gt", operator.gt),
        ("gte", operator.ge),
        ("lt", operator.lt),
        ("lte", operator.le),
    ):
        if name in ops:
            tests.append(_comparison(compare, ops[name]))
    if "exists" in ops:
        exists = ops["exists"]
        tests.append(lambda v: (v is not None) == exists)
    if len(tests) == 1:
        [only] = tests
        return lambda event: only(get(event))

    def test_all(event: Event) -> bool:
        value = get(event)
        return all(test(value) for test in tests)

    return test_all


def matcher(conditions: dict[str, Condition]) -> Callable[[Event], bool] | None:
    tests = [_test(path, condition) for path, condition in conditions.items()]
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]

    def match(event: Event) -> bool:
        for test in tests:  # noqa: SIM110  (a loop is cheaper than all() over a generator)
            if not test(event):
                return False
        return True

    return match


def _dispatch_values(aggregate: Aggregate) -> frozenset[Any] | None:
    """The discriminator values (`type`/`kind`) a plain eq/in filter pins, if any."""
    field = DISCRIMINATORS.get(aggregate.family)
    condition = aggregate.filter.get(field) if field else None
    if condition is None:
        return None
    ops = condition.operators()
    if set(ops) == {"eq"}:
        return frozenset([ops["eq"]])
    if set(ops) == {"in"}:
        return frozenset(ops["in"])
    return None


def _elements(value: list[Any]) -> list[Any]:
    return list(dict.fromkeys(v for v in value if v is not None and type(v) is not dict))


def _absent(value: Any) -> bool:
    """No group value: absent, an object, or a list without a usable element."""
    return value is None or type(value) is dict or (type(value) is list and not _elements(value))


def missing_field(group_by: tuple[str, ...]) -> Callable[[Event], str | None]:
    """Event → the first group_by path it has no group value for, None if it has all."""
    getters = [(path, getter(path)) for path in group_by]

    def first_missing(event: Event) -> str | None:
        for path, get in getters:
            if _absent(get(event)):
                return path
        return None

    return first_missing


def key_function(group_by: tuple[str, ...], missing: Any = UNKNOWN) -> Callable[[Event], Any]:
    """Event → group key, or a list of keys when a field holds a list (ECS
    event.category): one group per element. An absent field (or an object, or a list
    of nothing usable) has the value `missing`; MISSING instead makes the whole key
    MISSING."""
    if not group_by:
        return lambda event: None
    getters = [getter(path) for path in group_by]

    def key_any(event: Event) -> Any:
        parts = []
        exploded = False
        for get in getters:
            value = get(event)
            if _absent(value):
                if missing is MISSING:
                    return MISSING
                value = missing
            elif type(value) is list:
                exploded = True
                value = _elements(value)
            parts.append(value)
        if len(parts) == 1:
            return parts[0]
        if not exploded:
            return tuple(parts)
        lists = [p if type(p) is list else [p] for p in parts]
        return list(itertools.product(*lists))

    # Fast paths for one or two top-level string fields, the common case; anything
    # else (absent, a list, a number) goes the general way.
    if len(group_by) == 1 and _flat(group_by[0]):
        name = group_by[0]

        def key1(event: Event) -> Any:
            value = event.get(name)
            return value if type(value) is str else key_any(event)

        return key1
    if len(group_by) == 2 and _flat(group_by[0]) and _flat(group_by[1]):
        first, second = group_by

        def key2(event: Event) -> Any:
            a = event.get(first)
            b = event.get(second)
            if type(a) is str and type(b) is str:
                return (a, b)
            return key_any(event)

        return key2
    return key_any


class Plan:
    """One aggregate, ready for the per-event path."""

    __slots__ = (
        "aggregate",
        "close_after",
        "dispatch",
        "family",
        "group_by",
        "hopping",
        "index",
        "key",
        "layout",
        "match",
        "missing_field",
        "name",
        "new",
        "offset",
        "panes_per_window",
        "rejects_missing",
        "running_every",
        "size",
        "state_prefix",
        "step",
        "update",
    )

    def __init__(
        self, index: int, aggregate: Aggregate, *, max_distinct_exact: int = MAX_DISTINCT_EXACT
    ) -> None:
        self.index = index
        self.aggregate = aggregate
        self.name = aggregate.name
        self.family = aggregate.family
        self.group_by = aggregate.group_by
        window = aggregate.window
        self.size = window.size
        self.step = window.hop
        self.offset = window.offset
        self.hopping = self.step != self.size
        self.panes_per_window = self.size // self.step
        # A window [s, s + size) closes when the watermark reaches s + close_after.
        self.close_after = window.size + window.grace
        self.running_every = aggregate.emit.running_every
        self.dispatch = _dispatch_values(aggregate)
        conditions = dict(aggregate.filter)
        if self.dispatch is not None:
            del conditions[DISCRIMINATORS[aggregate.family]]  # the dispatch tested it
        self.match = matcher(conditions)
        self.rejects_missing = aggregate.missing_group == "reject"
        self.key = key_function(aggregate.group_by, MISSING if self.rejects_missing else UNKNOWN)
        self.missing_field = missing_field(aggregate.group_by)
        self.layout = Layout(
            aggregate,
            [path if _flat(path) else getter(path) for path in aggregate.values],
            max_distinct_exact=max_distinct_exact,
        )
        self.new = self.layout.new
        self.update = self.layout.update
        self.state_prefix = f"{aggregate.name}#{aggregate.fingerprint()}.{LAYOUT_VERSION}|"

    def pane_start(self, t: int) -> int:
        return t - (t - self.offset) % self.step

    def first_open(self, watermark: int) -> int:
        """The earliest window start whose window is still open at `watermark`."""
        start = self.pane_start(watermark - self.close_after)
        return start + self.step

    def labels(self, key: Any) -> dict[str, Any]:
        fields = self.group_by
        if not fields:
            return {}
        if len(fields) == 1:
            return {fields[0]: key}
        return dict(zip(fields, key, strict=True))

    def key_values(self, key: Any) -> list[Any]:
        if not self.group_by:
            return []
        return [key] if len(self.group_by) == 1 else list(key)

    def key_from_values(self, values: list[Any]) -> Any:
        if not self.group_by:
            return None
        return values[0] if len(self.group_by) == 1 else tuple(values)
