"""Alert summaries: `{name}` placeholders replaced by values, nothing evaluated.

`render("PM2.5 tại {refDevice}: {value} µg/m³", {"refDevice": "HD-AQ-017", "value": 61.25})`
gives `"PM2.5 tại HD-AQ-017: 61.25 µg/m³"`.

- A placeholder is `{` name `}`, the name made of letters, digits, `_`, `.` and `@`
  (field paths such as `source.ip` or `@timestamp`). The name is a key of `values`,
  looked up as one string: `{a.__class__}` reads the key "a.__class__", never an
  attribute. There is no indexing, no format spec (`{value:.2f}`), no conversion
  (`{value!r}`): text that is not a placeholder is copied as it is, braces included.
- A name without a value (or with None) renders as `?`, so a gap shows in the text
  instead of vanishing. The rule loader rejects unknown names, so at run time `?`
  means a group field the event did not carry, or a rule with no threshold.
- Numbers are written compactly (`format_value`), durations as `5m`, `1h30m`, `7d`
  (`format_duration`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final

import orjson

__all__ = ["MISSING", "format_duration", "format_number", "format_value", "render"]

#: What a placeholder without a value renders as.
MISSING: Final = "?"

_PLACEHOLDER: Final = re.compile(r"\{([\w.@]+)\}")
_DURATION_UNITS: Final = (
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
)


def render(template: str, values: Mapping[str, object]) -> str:
    """`template` with each `{name}` replaced by `format_value(values[name])`."""

    def substitute(match: re.Match[str]) -> str:
        return format_value(values.get(match.group(1)))

    return _PLACEHOLDER.sub(substitute, template)


def format_value(value: object) -> str:
    """Text for a placeholder: strings as they are, numbers compact, booleans
    `true`/`false`, None `?`, lists and mappings as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, list | tuple | dict):
        return orjson.dumps(value, default=str).decode()
    return str(value)


def format_number(number: float) -> str:
    """At most 2 decimals without trailing zeros (`10.0` → `10`, `61.256` → `61.26`);
    a non-zero number that would round to 0 keeps 2 significant digits instead
    (`0.0042` → `0.0042`), so a small ratio never reads as nothing."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    text = f"{number:.2f}"
    if number and not float(text):
        text = f"{number:.2g}"
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def format_duration(ms: int) -> str:
    """Milliseconds as the largest units, in the rule file's notation: 300000 → `5m`,
    5400000 → `1h30m`, 604800000 → `7d`, 1500 → `1s500ms`, 0 → `0s`."""
    if ms < 0:
        raise ValueError(f"a duration cannot be negative, got {ms} ms")
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in _DURATION_UNITS:
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
