"""Accumulators: the running state of one group's window (or pane), as a flat list.

An accumulator holds, in order: the event count, then for each value field only the
slots its statistics need (`n` always; `sum` for sum/mean; `min`; `max`; `last` as
time and value; a set for `distinct`; a sketch for percentiles). A flat list keeps
an open window small (no object per statistic) and its changelog payload a plain
JSON array.

`Layout.update(acc, event, t)` runs once per matching event and group, so it is
generated as straight-line code per aggregate (as `dataclasses` does for `__init__`):
only slot indices and fixed statements go into the source; field names and getters
are bound as constants of the function's namespace, never formatted into it.

Percentiles come from a sketch with relative accuracy ALPHA (DDSketch, Masson et al.
2019): a value v goes to bucket ceil(log_γ |v|) with γ = (1+α)/(1−α), and a bucket
answers with the value 2γ^i/(γ+1), within α·|v| of every value in it. The p-th
percentile is the sorted value at rank floor(p·(n−1)) (the lower percentile); the
sketch returns a value within ALPHA = 1 % of it (|v| below 1e-9 counts as 0). Merging
adds bucket counts, so the estimate does not depend on event order or on panes.
A window holds at most a few hundred buckets per value for real-world ranges.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from models.aggregates import PERCENTILES, Aggregate

__all__ = [
    "ALPHA",
    "NO_TIME",
    "Layout",
    "quantile",
    "sketch_key",
    "sketch_value",
]

ALPHA = 0.01
_GAMMA = (1 + ALPHA) / (1 - ALPHA)
_INV_LOG_GAMMA = 1 / math.log(_GAMMA)
_ZERO = 1e-9  # magnitudes below this are counted as zero
_OFFSET = 1 << 16  # keeps bucket keys of positive values > 0 (indices stay above -2,100)
#: The time of a `last` slot that has seen nothing yet.
NO_TIME = -(1 << 62)

Accumulator = list[Any]
Getter = Callable[[dict[str, Any]], Any]
Update = Callable[[Accumulator, dict[str, Any], int], None]


def sketch_key(value: float) -> int:
    """Bucket key, ordered like the values: negatives < 0 (zero) < positives."""
    if value > _ZERO:
        return math.ceil(math.log(value) * _INV_LOG_GAMMA) + _OFFSET
    if value < -_ZERO:
        return -(math.ceil(math.log(-value) * _INV_LOG_GAMMA) + _OFFSET)
    return 0


def sketch_value(key: int) -> float:
    """The value a bucket answers with: within ALPHA (relative) of all its values."""
    if key == 0:
        return 0.0
    index = abs(key) - _OFFSET
    value = 2 * _GAMMA**index / (_GAMMA + 1)
    return value if key > 0 else -value


def quantile(sketch: dict[int, int], q: float) -> float | None:
    """Estimate of the lower q-quantile (rank floor(q·(n−1))) of the sketched values."""
    total = sum(sketch.values())
    if not total:
        return None
    rank = math.floor(q * (total - 1))
    seen = 0
    for key in sorted(sketch):
        seen += sketch[key]
        if seen > rank:
            return sketch_value(key)
    raise AssertionError("unreachable: the ranks are within the counts")


class Layout:
    """The accumulator layout of one aggregate: create, update, merge, report, persist."""

    def __init__(self, aggregate: Aggregate, getters: Sequence[Getter | str]) -> None:
        """`getters[j]` reads value field j: a top-level key, or a function for a
        nested path."""
        stats = set(aggregate.statistics)
        self.values = aggregate.values
        self.report_counts = "count" in stats
        self.statistics = [s for s in aggregate.statistics if s != "count"]
        #: per value: slot name → index in the accumulator
        self.slots: list[dict[str, int]] = []
        kinds: list[str] = ["count"]
        for _ in self.values:
            slots = {"n": len(kinds)}
            kinds.append("n")
            for name, wanted in (
                ("sum", bool(stats & {"sum", "mean"})),
                ("min", "min" in stats),
                ("max", "max" in stats),
                ("last_t", "last" in stats),
                ("last", "last" in stats),
                ("distinct", "distinct" in stats),
                ("sketch", bool(stats & set(PERCENTILES))),
            ):
                if wanted:
                    slots[name] = len(kinds)
                    kinds.append(name)
            self.slots.append(slots)
        self.kinds = kinds
        initial = {"count": 0, "n": 0, "sum": 0, "last_t": NO_TIME}
        self._template: list[Any] = [initial.get(kind) for kind in kinds]
        self._sets = [i for i, kind in enumerate(kinds) if kind == "distinct"]
        self._sketches = [i for i, kind in enumerate(kinds) if kind == "sketch"]
        self.update: Update = self._compile(aggregate.name, getters)

    def new(self) -> Accumulator:
        acc = self._template.copy()
        for i in self._sets:
            acc[i] = set()
        for i in self._sketches:
            acc[i] = {}
        return acc

    def _compile(self, name: str, getters: Sequence[Getter | str]) -> Update:
        namespace: dict[str, Any] = {"_sketch_key": sketch_key}
        lines = ["def update(a, ev, t):", "    a[0] += 1"]
        if any(isinstance(get, str) for get in getters):
            lines.append("    get = ev.get")
        for j, slots in enumerate(self.slots):
            get = getters[j]
            namespace[f"value{j}"] = get
            read = f"get(value{j})" if isinstance(get, str) else f"value{j}(ev)"
            lines += [f"    v = {read}", "    if v is not None:", f"        a[{slots['n']}] += 1"]
            if "sum" in slots:
                lines.append(f"        a[{slots['sum']}] += v")
            if "min" in slots:
                i = slots["min"]
                lines += [f"        x = a[{i}]", f"        if x is None or v < x: a[{i}] = v"]
            if "max" in slots:
                i = slots["max"]
                lines += [f"        x = a[{i}]", f"        if x is None or v > x: a[{i}] = v"]
            if "last" in slots:
                # The latest event time wins; on a tie, the event processed later.
                i, k = slots["last_t"], slots["last"]
                lines += [
                    f"        if t >= a[{i}]:",
                    f"            a[{i}] = t",
                    f"            a[{k}] = v",
                ]
            if "distinct" in slots:
                lines.append(f"        a[{slots['distinct']}].add(v)")
            if "sketch" in slots:
                i = slots["sketch"]
                lines += [
                    "        k = _sketch_key(v)",
                    f"        s = a[{i}]",
                    "        s[k] = s.get(k, 0) + 1",
                ]
        source = "\n".join(lines) + "\n"
        exec(compile(source, f"<update of aggregate {name}>", "exec"), namespace)
        update: Update = namespace["update"]
        update.__doc__ = source  # for whoever debugs it
        return update

    def merge(self, accumulators: Sequence[Accumulator]) -> Accumulator:
        """One accumulator for a hopping window from its panes (never modifies them)."""
        out = self.new()
        for acc in accumulators:
            for i, kind in enumerate(self.kinds):
                theirs = acc[i]
                if kind in ("count", "n", "sum"):
                    out[i] += theirs
                elif kind == "min":
                    if theirs is not None and (out[i] is None or theirs < out[i]):
                        out[i] = theirs
                elif kind == "max":
                    if theirs is not None and (out[i] is None or theirs > out[i]):
                        out[i] = theirs
                elif kind == "last_t":
                    # Panes are merged in time order, so a later pane wins a tie, as it
                    # would have in one accumulator.
                    if theirs >= out[i] and theirs != NO_TIME:
                        out[i], out[i + 1] = theirs, acc[i + 1]
                elif kind == "distinct":
                    out[i] |= theirs
                elif kind == "sketch":
                    mine = out[i]
                    for key, count in theirs.items():
                        mine[key] = mine.get(key, 0) + count
        return out

    def report(self, acc: Accumulator) -> dict[str, Any]:
        """The `statistics` of a window result."""
        out: dict[str, Any] = {"count": acc[0]}
        for value, slots in zip(self.values, self.slots, strict=True):
            n = acc[slots["n"]]
            if self.report_counts:
                out[f"{value}_count"] = n
            for stat in self.statistics:
                key = f"{value}_{stat}"
                if stat == "distinct":
                    out[key] = len(acc[slots["distinct"]])
                elif not n:
                    out[key] = None
                elif stat == "sum":
                    out[key] = acc[slots["sum"]]
                elif stat == "mean":
                    out[key] = acc[slots["sum"]] / n
                elif stat in ("min", "max", "last"):
                    out[key] = acc[slots[stat]]
                else:
                    out[key] = quantile(acc[slots["sketch"]], PERCENTILES[stat])
        return out

    def dump(self, acc: Accumulator) -> list[Any]:
        """JSON-ready form: sets as lists, sketches as flat [key, count, …] lists."""
        if not self._sets and not self._sketches:
            return acc
        out = acc.copy()
        for i in self._sets:
            out[i] = list(acc[i])
        for i in self._sketches:
            out[i] = [item for pair in acc[i].items() for item in pair]
        return out

    def load(self, data: list[Any]) -> Accumulator:
        if len(data) != len(self.kinds):
            raise ValueError(f"accumulator has {len(data)} slots; the layout has {len(self.kinds)}")
        acc = list(data)
        for i in self._sets:
            acc[i] = set(data[i])
        for i in self._sketches:
            flat = data[i]
            acc[i] = dict(zip(flat[::2], flat[1::2], strict=True))
        return acc
