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

`distinct` is exact up to `max_distinct_exact` values per pane (or merged window),
then a HyperLogLog sketch (datasketch, 2^12 registers: about 1.6 % standard error,
5.5 KB in a changelog payload whatever the cardinality): an exact set of every user
name of a credential-stuffing attack would outgrow Kafka's record limit. A string
longer than DISTINCT_VALUE_CHARS is kept as its 128-bit digest, so that a few long
values do not make a pane large either. `estimated(acc)` names the statistics that
came from a sketch: the result flags them (`WindowResult.approximate`).

Sums stay finite: a value that would take a sum (and so the mean) beyond the largest
float is left out of the value's slots altogether (its `n`, min, max, … too, so that
the figures agree with each other) and counted in `skipped`. A sum beyond 64 bits is
written as a float, which JSON can carry.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from models.aggregates import PERCENTILES, Aggregate

if TYPE_CHECKING:
    from datasketch import HyperLogLog

__all__ = [
    "ALPHA",
    "DISTINCT_VALUE_CHARS",
    "HLL_PRECISION",
    "MAX_DISTINCT_EXACT",
    "NO_TIME",
    "Layout",
    "distinct_key",
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
#: Exact distinct values kept per pane before the slot becomes a sketch. At most
#: ~200 bytes a value in JSON (DISTINCT_VALUE_CHARS of 3-byte UTF-8), a pane's set
#: stays under ~200 KB per value field: far below Kafka's 1 MiB record limit.
MAX_DISTINCT_EXACT = 1000
#: Longer strings are kept, and hashed into the sketch, as "#" + a 128-bit digest.
DISTINCT_VALUE_CHARS = 64
#: log2 of the HyperLogLog registers: 4096 one-byte registers, ~1.6 % standard error.
HLL_PRECISION = 12
_MAX_FLOAT = sys.float_info.max
_INT64_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1  # the integers orjson can write

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
    try:
        value = 2 * _GAMMA**index / (_GAMMA + 1)
    except OverflowError:  # the top bucket, of values near the largest float
        value = _MAX_FLOAT
    return value if key > 0 else -value


def distinct_key(value: Any) -> Any:
    """The form a distinct value is kept in (and hashed into a sketch as)."""
    if type(value) is str and len(value) > DISTINCT_VALUE_CHARS:
        digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16)
        return "#" + digest.hexdigest()
    return value


def _hll_bytes(key: Any) -> bytes:
    if type(key) is str:
        return b"s" + key.encode("utf-8", "surrogatepass")
    return orjson.dumps(key)


@functools.cache
def _hyperloglog() -> type[HyperLogLog]:
    # Imported on first use: datasketch loads numpy and scipy, 0.7 s at every start of
    # every process that imports the window core, and most never need a sketch.
    from datasketch import HyperLogLog

    return HyperLogLog


def _to_sketch(values: set[Any]) -> HyperLogLog:
    sketch = _hyperloglog()(p=HLL_PRECISION)
    for key in values:
        sketch.update(_hll_bytes(key))
    return sketch


def _json_number(value: Any) -> Any:
    """A sum as JSON can carry it: an integer beyond 64 bits as a float."""
    if type(value) is int and not _INT64_MIN <= value <= _UINT64_MAX:
        return float(value)
    return value


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

    def __init__(
        self,
        aggregate: Aggregate,
        getters: Sequence[Getter | str],
        *,
        max_distinct_exact: int = MAX_DISTINCT_EXACT,
    ) -> None:
        """`getters[j]` reads value field j: a top-level key, or a function for a
        nested path. `max_distinct_exact`: distinct values kept exactly per pane."""
        if max_distinct_exact < 0:
            raise ValueError(f"max_distinct_exact must be >= 0 (got {max_distinct_exact})")
        self.max_distinct_exact = max_distinct_exact
        #: Values left out because they would have made a sum non-finite (one cell, so
        #: the generated update can count into it).
        self._skipped = [0]
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
        self._sums = [i for i, kind in enumerate(kinds) if kind == "sum"]
        self._distinct_stats = [
            (f"{value}_distinct", slots["distinct"])
            for value, slots in zip(self.values, self.slots, strict=True)
            if "distinct" in slots and "distinct" in stats
        ]
        self.update: Update = self._compile(aggregate.name, getters)

    @property
    def skipped(self) -> int:
        """Values left out so far because adding them would make a sum non-finite."""
        return self._skipped[0]

    def new(self) -> Accumulator:
        acc = self._template.copy()
        for i in self._sets:
            acc[i] = set()
        for i in self._sketches:
            acc[i] = {}
        return acc

    def _compile(self, name: str, getters: Sequence[Getter | str]) -> Update:
        namespace: dict[str, Any] = {
            "_sketch_key": sketch_key,
            "_distinct_key": distinct_key,
            "_hll_bytes": _hll_bytes,
            "_to_sketch": _to_sketch,
            "_set": set,
            "_max": _MAX_FLOAT,
            "_skipped": self._skipped,
            "_limit": self.max_distinct_exact,
        }
        lines = ["def update(a, ev, t):", "    a[0] += 1"]
        if any(isinstance(get, str) for get in getters):
            lines.append("    get = ev.get")
        for j, slots in enumerate(self.slots):
            get = getters[j]
            namespace[f"value{j}"] = get
            read = f"get(value{j})" if isinstance(get, str) else f"value{j}(ev)"
            lines += [f"    v = {read}", "    if v is not None:"]
            pad = " " * 8
            if "sum" in slots:
                # NaN fails both comparisons, as do ±inf: the value is left out.
                i = slots["sum"]
                lines += [
                    f"        s = a[{i}] + v",
                    "        if not -_max <= s <= _max:",
                    "            _skipped[0] += 1",
                    "        else:",
                    f"            a[{i}] = s",
                ]
                pad = " " * 12
            body = [f"a[{slots['n']}] += 1"]
            if "min" in slots:
                i = slots["min"]
                body += [f"x = a[{i}]", f"if x is None or v < x: a[{i}] = v"]
            if "max" in slots:
                i = slots["max"]
                body += [f"x = a[{i}]", f"if x is None or v > x: a[{i}] = v"]
            if "last" in slots:
                # The latest event time wins; on a tie, the event processed later.
                i, k = slots["last_t"], slots["last"]
                body += [f"if t >= a[{i}]:", f"    a[{i}] = t", f"    a[{k}] = v"]
            if "distinct" in slots:
                i = slots["distinct"]
                body += [
                    "d = _distinct_key(v)",
                    f"s = a[{i}]",
                    "if type(s) is _set:",
                    "    s.add(d)",
                    f"    if len(s) > _limit: a[{i}] = _to_sketch(s)",
                    "else:",
                    "    s.update(_hll_bytes(d))",
                ]
            if "sketch" in slots:
                i = slots["sketch"]
                body += ["k = _sketch_key(v)", f"s = a[{i}]", "s[k] = s.get(k, 0) + 1"]
            lines += [pad + line for line in body]
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
                if kind in ("count", "n"):
                    out[i] += theirs
                elif kind == "sum":
                    total = out[i] + theirs
                    if -_MAX_FLOAT <= total <= _MAX_FLOAT:
                        out[i] = total
                    else:  # each pane is finite, their sum need not be
                        out[i] = math.copysign(_MAX_FLOAT, total)
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
                    out[i] = self._union(out[i], theirs)
                elif kind == "sketch":
                    mine = out[i]
                    for key, count in theirs.items():
                        mine[key] = mine.get(key, 0) + count
        return out

    def _union(self, mine: Any, theirs: Any) -> Any:
        """`mine` (owned by the merge) with `theirs` (a pane's: never modified) added."""
        if type(mine) is set:
            if type(theirs) is set:
                mine |= theirs
                return _to_sketch(mine) if len(mine) > self.max_distinct_exact else mine
            mine, theirs = theirs, mine  # a sketch and a set: start from the sketch
            merged = mine.copy()
            for key in theirs:
                merged.update(_hll_bytes(key))
            return merged
        if type(theirs) is set:
            for key in theirs:
                mine.update(_hll_bytes(key))
        else:
            mine.merge(theirs)
        return mine

    def estimated(self, acc: Accumulator) -> tuple[str, ...]:
        """The `distinct` statistics of `acc` that come from a sketch, not a set."""
        if not self._distinct_stats:
            return ()
        return tuple(name for name, i in self._distinct_stats if type(acc[i]) is not set)

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
                    seen = acc[slots["distinct"]]
                    out[key] = len(seen) if type(seen) is set else round(seen.count())
                elif not n:
                    out[key] = None
                elif stat == "sum":
                    out[key] = _json_number(acc[slots["sum"]])
                elif stat == "mean":
                    out[key] = acc[slots["sum"]] / n
                elif stat in ("min", "max", "last"):
                    out[key] = acc[slots[stat]]
                else:
                    out[key] = quantile(acc[slots["sketch"]], PERCENTILES[stat])
        return out

    def dump(self, acc: Accumulator) -> list[Any]:
        """JSON-ready form: sets as lists, HyperLogLogs as {"hll": base64 registers},
        sketches as flat [key, count, …] lists, sums beyond 64 bits as floats."""
        if not self._sets and not self._sketches and not self._sums:
            return acc
        out = acc.copy()
        for i in self._sums:
            out[i] = _json_number(acc[i])
        for i in self._sets:
            seen = acc[i]
            if type(seen) is set:
                out[i] = list(seen)
            else:
                out[i] = {"hll": base64.b64encode(seen.reg.tobytes()).decode()}
        for i in self._sketches:
            out[i] = [item for pair in acc[i].items() for item in pair]
        return out

    def load(self, data: list[Any]) -> Accumulator:
        if len(data) != len(self.kinds):
            raise ValueError(f"accumulator has {len(data)} slots; the layout has {len(self.kinds)}")
        acc = list(data)
        for i in self._sums:
            # Written as null by versions that let a sum reach infinity: what it held
            # is lost, and 0 keeps the next reading from failing on None.
            if acc[i] is None:
                acc[i] = 0
        for i in self._sets:
            seen = data[i]
            if type(seen) is dict:
                import numpy as np  # loaded with datasketch by _hyperloglog

                registers = np.frombuffer(base64.b64decode(seen["hll"]), dtype=np.int8)
                acc[i] = _hyperloglog()(reg=registers.copy())
            else:
                acc[i] = set(seen)
        for i in self._sketches:
            flat = data[i]
            acc[i] = dict(zip(flat[::2], flat[1::2], strict=True))
        return acc
