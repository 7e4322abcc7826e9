"""Deliberately malformed messages: what careless integrators really send.

Each kind breaks docs/EVENTS.md in one way, so the processor must dead-letter it (a bad
array: exactly its one bad element). Kinds are taken in turn per family, so even a short
run shows each of them; only the details (which field, which variant) are drawn.
"""

from __future__ import annotations

import copy
import random
import unicodedata
from datetime import datetime, timedelta
from typing import Any, Final

import orjson

__all__ = ["KINDS", "Malformer", "corrupt", "legacy_vietnamese"]

KINDS: Final[dict[str, tuple[str, ...]]] = {
    "city": (
        "bad_json",
        "wrong_type",
        "missing_field",
        "not_finite",
        "not_utf8",
        "negative",
        "future_time",
        "bad_array",
    ),
    "services": (
        "bad_json",
        "wrong_type",
        "missing_field",
        "not_finite",
        "not_utf8",
        "negative",
        "future_time",
        "bad_array",
    ),
    "security": (
        "bad_json",
        "wrong_type",
        "missing_field",
        "invalid_ip",
        "not_utf8",
        "bad_port",
        "future_time",
        "bad_array",
    ),
}
_TIME_FIELD: Final = {"city": "dateObserved", "services": "occurred_at", "security": "@timestamp"}
_REQUIRED: Final = {"city": "refDevice", "services": "agency", "security": "@timestamp"}
_NOT_FINITE: Final = "<not finite>"  # replaced by a bare NaN / 1e999 after serialising
_TONE_MARKS: Final = "\u0300\u0301\u0303\u0309\u0323"


def legacy_vietnamese(text: str) -> bytes:
    """Windows-1258, as old Vietnamese Windows software writes it: precomposed vowels
    (â, ư, ơ…) with the tone as a separate combining byte. Not UTF-8."""
    out = bytearray()
    for char in unicodedata.normalize("NFC", text):
        try:
            out += char.encode("cp1258")
        except UnicodeEncodeError:
            parts = unicodedata.normalize("NFD", char)
            tones = "".join(c for c in parts if c in _TONE_MARKS)
            vowel = unicodedata.normalize("NFC", "".join(c for c in parts if c not in _TONE_MARKS))
            out += (vowel + tones).encode("cp1258", errors="replace")
    return bytes(out)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _later(stamp: str, hours: int) -> str:
    shifted = datetime.fromisoformat(stamp) + timedelta(hours=hours)
    text = shifted.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if stamp.endswith("Z") else text


def _break_field(family: str, kind: str, event: dict[str, Any], rng: random.Random) -> None:
    """Break `event` in place (one JSON object) in the way `kind` names."""
    if kind == "missing_field":
        del event[_REQUIRED[family]]
    elif kind == "future_time":  # a device whose clock was never set right
        field = _TIME_FIELD[family]
        event[field] = _later(event[field], 1)
    elif family == "city":
        event["pm25"] = {
            "wrong_type": "abc",
            "not_finite": _NOT_FINITE,
            "negative": -round(rng.uniform(0.5, 8.0), 1),
        }[kind]
    elif family == "services":
        fee = event.get("fee_vnd") or 50_000
        event["fee_vnd"] = {"wrong_type": str(fee), "not_finite": _NOT_FINITE, "negative": -fee}[
            kind
        ]
    elif kind == "invalid_ip":
        event["source"]["ip"] = rng.choice(("10.20.1.300", "203.0.113", "fe80::zz1", "localhost"))
    else:
        event["destination"]["port"] = {
            "wrong_type": str(event["destination"]["port"]),
            "bad_port": 70_000,
        }[kind]


def corrupt(family: str, kind: str, events: list[dict[str, Any]], rng: random.Random) -> bytes:
    """One malformed message built from valid `events` (three for `bad_array`, else one)."""
    event = copy.deepcopy(events[0])
    if kind == "bad_array":
        items = copy.deepcopy(events[:3])
        _break_field(family, "missing_field", items[rng.randrange(3)], rng)
        return _dumps(items)
    if kind == "bad_json":
        text = _dumps(event)
        # A producer that died mid-write, or one that printed a Python dict.
        return text[: len(text) // 2] if rng.random() < 0.5 else repr(event).encode()
    if kind == "not_utf8":
        event["ghiChu"] = "Dữ liệu được đồng bộ từ phần mềm cũ"
        raw = legacy_vietnamese(_dumps(event).decode())
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
        raise AssertionError("legacy encoding produced valid UTF-8")  # a bug here, not input
    _break_field(family, kind, event, rng)
    raw = _dumps(event)
    if kind == "not_finite":
        literal = rng.choice((b"NaN", b"1e999"))  # NaN is not JSON; 1e999 overflows a double
        raw = raw.replace(orjson.dumps(_NOT_FINITE), literal)
    return raw


class Malformer:
    """Takes the kinds of each family in turn."""

    def __init__(self) -> None:
        self._turn = dict.fromkeys(KINDS, 0)

    def next_kind(self, family: str) -> str:
        kinds = KINDS[family]
        kind = kinds[self._turn[family] % len(kinds)]
        self._turn[family] += 1
        return kind
