"""The alert record of topic `ioc.alerts` (docs/RULES.md, "The ioc.alerts record").

An alert is identified by its labels, as in Prometheus and Alertmanager: `alertname`
(the rule), `severity`, the group labels and the rule's extra labels. Values, counts and
sample ids go in `annotations` and `evidence`, which never change the identity.

Records are built on the rule stage's hot path only when an alert fires or resolves,
so `Alert` is a plain frozen dataclass like `WindowResult`; `from_json` checks the
shape for readers (sinks, tests) and raises ValueError on anything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import orjson

from models.timefmt import rfc3339

__all__ = [
    "MAX_EVENT_IDS",
    "STATES",
    "Alert",
    "AlertState",
    "Evidence",
    "fingerprint",
    "label_value",
]

AlertState = Literal["firing", "resolved"]
STATES: tuple[str, ...] = get_args(AlertState)
#: Sample event ids an alert carries as evidence; the rest stay in the source topics.
MAX_EVENT_IDS: Final = 10


def label_value(value: Any) -> str:
    """A group value as label text: strings as they are, anything else as JSON
    (`17`, `true`, `null`), the same rule as `WindowResult.identity`."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _escaped(value: str) -> str:
    # Group values come from events (user names, URLs): without this, a value holding
    # "\nseverity=critical" would hash like another label set and overwrite its alert.
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def fingerprint(labels: Mapping[str, str]) -> str:
    """First 16 hex digits of SHA-256 over the labels sorted by name, one `name=value\\n`
    line each. Backslashes and newlines in values are escaped (`\\\\`, `\\n`), so a
    value cannot forge a line; names are field paths and never hold `=` or newlines."""
    text = "".join(f"{name}={_escaped(labels[name])}\n" for name in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the detector saw when the alert was last active. Times in epoch ms."""

    value: float | None = None
    threshold: float | None = None
    window_start: int | None = None
    window_end: int | None = None
    event_ids: tuple[str, ...] = ()  # at most MAX_EVENT_IDS sample ids
    count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "threshold": self.threshold,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "event_ids": self.event_ids,
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        return cls(
            value=_optional(data.get("value"), (int, float), "evidence.value"),
            threshold=_optional(data.get("threshold"), (int, float), "evidence.threshold"),
            window_start=_optional(data.get("window_start"), int, "evidence.window_start"),
            window_end=_optional(data.get("window_end"), int, "evidence.window_end"),
            event_ids=tuple(_strings(data.get("event_ids", []), "evidence.event_ids")),
            count=_optional(data.get("count"), int, "evidence.count"),
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """One firing or resolved alert: the record of topic `ioc.alerts`.

    Kafka key: `fingerprint`. Value (`to_json`), for example:

        {"identity": "3f1c9a0b7d2e4f61|1795662000000|firing",
         "fingerprint": "3f1c9a0b7d2e4f61", "state": "firing",
         "starts_at": "2026-11-26T03:00:00Z", "starts_at_ms": 1795662000000,
         "ends_at": null, "ends_at_ms": null,
         "labels": {"alertname": "brute_force", "severity": "warning",
                    "source.ip": "203.0.113.7", "team": "soc"},
         "annotations": {"summary_vi": "Dò mật khẩu từ 203.0.113.7: 12 lần …",
                         "summary_en": "Brute force from 203.0.113.7: 12 failed …",
                         "value": "12", "threshold": "10", "window": "5m"},
         "kind": "count", "flapping": false,
         "evidence": {"value": 12, "threshold": 10, "window_start": 1795661700000,
                      "window_end": 1795662000000, "event_ids": ["e-1", "e-2"],
                      "count": 12}}

    - `identity`: `<fingerprint>|<starts_at_ms>|<state>`: a replay writes the same
      identities, and a later record of the same identity (a firing alert whose
      flapping flag changed) supersedes the earlier one.
    - `annotations`: strings, as Alertmanager wants them; `value`, `threshold` and
      `window` are left out when the rule has none (a `match` rule has no threshold).
    - `ends_at`: the resolution time (event time), null while firing.
    """

    fingerprint: str
    state: AlertState
    starts_at_ms: int
    ends_at_ms: int | None
    labels: dict[str, str]
    annotations: dict[str, str]
    kind: str
    flapping: bool = False
    evidence: Evidence = Evidence()

    @property
    def identity(self) -> str:
        return f"{self.fingerprint}|{self.starts_at_ms}|{self.state}"

    @property
    def rule(self) -> str:
        return self.labels["alertname"]

    @property
    def order(self) -> tuple[int, int]:
        """Which of two records of one fingerprint is the later state: the later episode,
        and within one, the resolution after the firing."""
        return (self.starts_at_ms, 0 if self.state == "firing" else 1)

    def to_json(self) -> bytes:
        ends_at = self.ends_at_ms
        return orjson.dumps(
            {
                "identity": self.identity,
                "fingerprint": self.fingerprint,
                "state": self.state,
                "starts_at": rfc3339(self.starts_at_ms),
                "starts_at_ms": self.starts_at_ms,
                "ends_at": None if ends_at is None else rfc3339(ends_at),
                "ends_at_ms": ends_at,
                "labels": self.labels,
                "annotations": self.annotations,
                "kind": self.kind,
                "flapping": self.flapping,
                "evidence": self.evidence.to_dict(),
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> Alert:
        """Parse a record written by `to_json`; ValueError names what is wrong.
        The `_ms` forms are authoritative; the RFC 3339 texts are for people."""
        record = orjson.loads(data)  # JSONDecodeError is a ValueError
        if not isinstance(record, dict):
            raise ValueError("not an ioc.alerts record: expected a JSON object")
        try:
            state = record["state"]
            if state not in STATES:
                raise ValueError(f"state: expected firing or resolved, got {state!r}")
            evidence = record.get("evidence") or {}
            if not isinstance(evidence, dict):
                raise ValueError("evidence: expected an object")
            return cls(
                fingerprint=_required(record["fingerprint"], str, "fingerprint"),
                state=state,
                starts_at_ms=_required(record["starts_at_ms"], int, "starts_at_ms"),
                ends_at_ms=_optional(record.get("ends_at_ms"), int, "ends_at_ms"),
                labels=_text_mapping(record["labels"], "labels"),
                annotations=_text_mapping(record.get("annotations") or {}, "annotations"),
                kind=_required(record["kind"], str, "kind"),
                flapping=_required(record.get("flapping", False), bool, "flapping"),
                evidence=Evidence.from_dict(evidence),
            )
        except KeyError as exc:
            raise ValueError(f"not an ioc.alerts record: missing {exc.args[0]}") from None


def _required(value: Any, kind: type | tuple[type, ...], field: str) -> Any:
    # bool is an int in Python; a flag where a number belongs is still wrong.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{field}: expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _optional(value: Any, kind: type | tuple[type, ...], field: str) -> Any:
    return None if value is None else _required(value, kind, field)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _strings(values: Any, field: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{field}: expected a list of strings")
    return values


def _text_mapping(values: Any, field: str) -> dict[str, str]:
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise ValueError(f"{field}: expected an object of strings")
    return values
