"""One `ioc.aggregates` record as one line of InfluxDB line protocol. Pure, no I/O.

    ioc_aggregate,aggregate=air_station_5m,areaServed=TP\\ Hải\\ Dương,refDevice=HD-AQ-017
        count=5i,pm25_count=5i,pm25_mean=61.2,pm25_max=70.1 1795662000000

(one line; wrapped here). The layout, and why:

- **One measurement, `ioc_aggregate`, with the aggregate as the tag `aggregate`.**
  VictoriaMetrics names a series `<measurement>_<field>`, so each statistic becomes its
  own metric, `ioc_aggregate_pm25_mean{aggregate="air_station_5m", refDevice=…}`: the
  same statistic of the 5-minute and the hourly aggregate is one metric told apart by
  a label, and a metric is always one quantity (the Prometheus naming rule). In
  InfluxDB it is one measurement with sparse fields. The issue's `statistic` label is
  the field key (the metric name's suffix in VictoriaMetrics).
- **Statistics are fields**, with the keys of the record (`pm25_mean`). The record's
  `count` is written as the field `count` when `statistics` has none (the derived
  `aqi_station_1h`), so `ioc_aggregate_count` is "events in the window" everywhere.
  `null` statistics and non-finite floats are left out (no point, not a zero).
- **Field types come from the statistic's name, not from the JSON value**, because
  InfluxDB refuses a field whose type changes (a `max` of readings that happen to be
  whole numbers would be an integer in one window and a float in the next). Integers
  (`5i`): `count`, `*_count`, `*_distinct`, the case backlog's `open`, `overdue`,
  `near_due`, and the VN_AQI `aqi` and `aqi_*` sub-indices (whole numbers by
  definition). Everything else is a float, whole or not. An integer statistic with a
  fractional value is a bug upstream: `EncodeError`, and the record is dead-lettered.
- **Text statistics** (`band`, `dominant` of `aqi_station_1h`) are string fields when
  `string_fields` is true (InfluxDB stores them). VictoriaMetrics stores a string
  field as the number 0 (checked against 1.79), so its sink passes `False` and they
  are left out; they are functions of `aqi` and the sub-indices, nothing is lost.
  Not tags: a tag that changes from hour to hour would split one station's series.
- **Tags are the group labels that are bounded**, by this rule: the label must be on
  the allow-list `BOUNDED_LABELS` (or one the operator adds, `allowed=`), and no
  allow-list can admit a label that `is_unbounded` (addresses, identifiers, user and
  host names, hashes, URLs). A record with *any* other group label is not written
  (`encode` returns None): dropping the label instead would make the groups that
  differ only in it the same point, and each would overwrite the others. Aggregates
  per IP or user are for alerts and top-N lists, not for the time-series store.
  A `null` or empty group value is left out (a tag value cannot be empty).
- **Names are Prometheus-compatible**: characters other than `[A-Za-z0-9_]` in tag and
  field keys become `_` (`organization.name` → `organization_name`,
  `source.ip_distinct` → `source_ip_distinct`), so PromQL selects them as they are.
  Tag values are kept as they are (Vietnamese included), escaped.
- **Timestamp**: `window_start_ms`, sent with `precision=ms`. A point is measurement +
  tags + timestamp, so writing the same window result again writes the same point.

Escaping (InfluxDB line protocol reference): measurement — comma and space; tag keys,
tag values, field keys — comma, `=` and space; string field values — `"` and `\\`.
A backslash in a key or tag value is written `\\\\` (VictoriaMetrics reads it back as
one backslash; InfluxDB keeps both, but the line parses unambiguously either way).
Newlines and carriage returns end a line and are not allowed anywhere: they become
spaces. String fields are cut to 64 KiB (InfluxDB's limit).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from models.errors import EncodeError

__all__ = [
    "BOUNDED_LABELS",
    "MEASUREMENT",
    "encode",
    "escape_key",
    "escape_measurement",
    "escape_string",
    "is_integer_statistic",
    "is_unbounded",
    "safe_name",
    "unbounded_labels",
]

MEASUREMENT = "ioc_aggregate"

#: Group labels with few values (stations, districts, agencies, categories, partitions).
BOUNDED_LABELS: frozenset[str] = frozenset(
    {
        # city (NGSI-LD): the station or device, and its district
        "refDevice",
        "areaServed",
        "type",
        # services: agency, district, kind, channel, sector, status
        "agency",
        "district",
        "kind",
        "channel",
        "sector",
        "status",
        "partition",  # the case backlog's share, one per input partition
        # security (ECS): the agency and fixed vocabularies
        "organization.name",
        "event.category",
        "event.outcome",
        "event.action",
        "event.type",
        "observer.type",
    }
)

# Addresses, identifiers, people, hosts, hashes, URLs: one value per thing, unbounded.
_UNBOUNDED = re.compile(
    r"(^|[._])(ip|address|mac|port|id|ids|uuid|hash|email|phone)([._]|$)"
    r"|^(user|host|url|file|process|client|server|source|destination)\."
    r"|^(id|name|username|hostname)$",
    re.IGNORECASE,
)

_INTEGER_NAMES = frozenset({"count", "open", "overdue", "near_due", "aqi"})
_MEASUREMENT = MEASUREMENT  # needs no escaping
_SPECIAL = re.compile(r"[\\,= \r\n]")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")
_MAX_STRING_BYTES = 64 * 1024
_INT64 = 2**63


@functools.lru_cache(maxsize=4096)
def is_unbounded(label: str) -> bool:
    """True for labels no allow-list may admit: addresses, ids, user and host names…"""
    return bool(_UNBOUNDED.search(label))


def unbounded_labels(labels: Iterable[str], allowed: frozenset[str] = BOUNDED_LABELS) -> list[str]:
    """The labels that keep a group out of the time-series store, sorted."""
    return sorted(label for label in labels if label not in allowed or is_unbounded(label))


@functools.lru_cache(maxsize=4096)
def is_integer_statistic(name: str) -> bool:
    """Counts (and the VN_AQI, whole by definition) are integer fields; the rest floats."""
    return (
        name in _INTEGER_NAMES or name.endswith(("_count", "_distinct")) or name.startswith("aqi_")
    )


@functools.lru_cache(maxsize=4096)
def safe_name(name: str) -> str:
    """A Prometheus-compatible label or field name (`organization.name` → `…_name`)."""
    safe = _NOT_NAME.sub("_", name)
    # Line protocol reserves names starting with `_`; PromQL refuses a leading digit.
    return safe if safe and (safe[0].isalpha()) else f"x{safe}"


def _one_line(text: str) -> str:
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def escape_measurement(name: str) -> str:
    """Measurement: backslash, comma and space escaped; newlines become spaces."""
    return _one_line(name).replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def escape_key(text: str) -> str:
    """Tag key, tag value or field key: backslash, comma, `=` and space escaped."""
    if not _SPECIAL.search(text):
        return text
    return (
        _one_line(text)
        .replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace("=", "\\=")
        .replace(" ", "\\ ")
    )


def escape_string(text: str) -> str:
    """A string field value, quoted: `\\` and `"` escaped, cut to 64 KiB."""
    data = _one_line(text).encode()
    if len(data) > _MAX_STRING_BYTES:
        text = data[:_MAX_STRING_BYTES].decode(errors="ignore")
    else:
        text = data.decode()
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Keys repeat in every record of an aggregate: escape each once.
@functools.lru_cache(maxsize=4096)
def _escaped_name(name: str) -> str:
    return escape_key(safe_name(name))


def _tag_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = json.dumps(value)
    else:
        raise EncodeError(f"group value {value!r} is not a string or number")
    return text if text.strip() else None


def _field_value(name: str, value: Any, string_fields: bool) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if is_integer_statistic(name):
            if isinstance(value, float):
                if not value.is_integer():
                    raise EncodeError(f"statistic {name!r} is a count but is {value!r}")
                value = int(value)
            if not -_INT64 <= value < _INT64:
                raise EncodeError(f"statistic {name!r} = {value} is out of the int64 range")
            return f"{value}i"
        try:
            return repr(float(value))
        except OverflowError as exc:
            raise EncodeError(f"statistic {name!r} = {value} is too large") from exc
    if isinstance(value, str):
        return escape_string(value) if string_fields else None
    raise EncodeError(f"statistic {name!r} is {type(value).__name__}, not a number or text")


def encode(
    record: Mapping[str, Any],
    *,
    allowed: frozenset[str] = BOUNDED_LABELS,
    string_fields: bool = True,
) -> bytes | None:
    """The record's point, without the line end, or None if it is not to be written
    (a group label not bounded, or no statistic with a value).

    Writes running updates (`final: false`) like finals: the caller chooses. Raises
    `EncodeError` for a record that is not a valid `ioc.aggregates` value.
    """
    try:
        aggregate = record["aggregate"]
        group = record["group"]
        timestamp = record["window_start_ms"]
        statistics = record["statistics"]
    except KeyError as exc:
        raise EncodeError(f"not an ioc.aggregates record: no {exc.args[0]!r}") from exc
    if not isinstance(aggregate, str) or not aggregate:
        raise EncodeError(f"aggregate {aggregate!r} is not a name")
    if not isinstance(group, Mapping) or not isinstance(statistics, Mapping):
        raise EncodeError("group and statistics must be objects")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise EncodeError(f"window_start_ms {timestamp!r} is not an integer")
    if any(label not in allowed or is_unbounded(label) for label in group):
        return None

    tags = {"aggregate": escape_key(aggregate)}
    for label, value in group.items():
        text = _tag_value(value)
        if text is not None:
            tags[_escaped_name(label)] = escape_key(text)
    fields: list[str] = []
    if "count" not in statistics and record.get("count") is not None:
        statistics = {"count": record["count"], **statistics}
    for name, value in statistics.items():
        encoded = _field_value(safe_name(name), value, string_fields)
        if encoded is not None:
            fields.append(f"{_escaped_name(name)}={encoded}")
    if not fields:
        return None
    tag_text = "".join(f",{k}={tags[k]}" for k in sorted(tags))
    line = f"{_MEASUREMENT}{tag_text} {','.join(fields)} {timestamp}"
    return line.encode()
