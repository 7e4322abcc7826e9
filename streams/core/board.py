"""The console's board: alerts and what operators did to them, folded the same way on
every worker (docs/CONSOLE.md). Pure: no Kafka, no clock of its own.

Each worker reads all of `ioc.alerts` and `ioc.alert-actions`, in whatever order the two
topics and their partitions arrive, so the fold does not depend on it:

- an alert's record is the latest of its fingerprint by (`starts_at_ms`, resolved after
  firing); one fingerprint's records share a partition, so a later record of the same
  identity (its flapping flag changed) comes after the earlier one everywhere;
- actions are kept by id (a replay counts once) and judged by their own times: an
  acknowledgement holds for the episode it names, a silence from its `at_ms` until
  `until_ms` unless an unsilence came after it (`at_ms`), comments in (`at_ms`, id)
  order. An action that comes before its alert waits for it (`orphans`, bounded).

What time changes (silences ending, resolved alerts leaving) happens in `tick`, with the
wall clock the caller passes. Every change bumps `seq` and is remembered (the latest
`MAX_CHANGES`), so a live stream can send what changed after a client's last event.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from models.actions import AlertAction
from models.alerts import Alert

__all__ = ["MAX_CHANGES", "MAX_COMMENTS", "Board", "Entry", "Filters"]

#: Changes remembered for clients that reconnect (`changes_since`).
MAX_CHANGES: Final = 10_000
#: Comments an alert keeps on the board (the latest).
MAX_COMMENTS: Final = 50
#: Fingerprints whose actions wait for their alert.
MAX_ORPHANS: Final = 10_000
#: Acknowledged episodes an alert remembers (the latest).
MAX_ACKS: Final = 8
#: Labels that name where an alert is: what the district filter looks at.
DISTRICT_LABELS: Final = ("areaServed", "district")


@dataclass(slots=True)
class _Actions:
    """What operators did to one fingerprint."""

    acks: dict[int, AlertAction] = field(default_factory=dict)  # episode → latest ack
    silences: dict[str, AlertAction] = field(default_factory=dict)  # id → silence
    unsilenced_at: int = -1  # the latest unsilence: silences made before it are over
    unsilenced_by: AlertAction | None = None
    comments: dict[str, AlertAction] = field(default_factory=dict)  # id → comment
    last: AlertAction | None = None

    def apply(self, action: AlertAction) -> bool:
        """Fold one action; False if it changes nothing (a replay, an older ack)."""
        kind = action.action
        if kind == "ack":
            assert action.episode_ms is not None  # AlertAction checks
            known = self.acks.get(action.episode_ms)
            if known is not None and _order(known) >= _order(action):
                return False
            self.acks[action.episode_ms] = action
            if len(self.acks) > MAX_ACKS:
                del self.acks[min(self.acks)]
        elif kind == "silence":
            if action.id in self.silences or action.at_ms < self.unsilenced_at:
                return False
            self.silences[action.id] = action
        elif kind == "unsilence":
            if action.at_ms <= self.unsilenced_at:
                return False
            self.unsilenced_at, self.unsilenced_by = action.at_ms, action
            self.silences = {
                i: s for i, s in self.silences.items() if s.at_ms >= self.unsilenced_at
            }
        else:
            if action.id in self.comments:
                return False
            self.comments[action.id] = action
            if len(self.comments) > MAX_COMMENTS:
                oldest = min(self.comments.values(), key=_order)
                del self.comments[oldest.id]
        if self.last is None or _order(action) > _order(self.last):
            self.last = action
        return True

    def silence(self, now_ms: int) -> AlertAction | None:
        """The silence holding now that lasts longest, or None."""
        holding = [s for s in self.silences.values() if (s.until_ms or 0) > now_ms]
        return max(holding, key=lambda s: (s.until_ms, s.id), default=None)

    def forget_expired(self, now_ms: int) -> int | None:
        """Drop the silences that ended; the latest end among them, or None."""
        ended = [s.until_ms or 0 for s in self.silences.values() if (s.until_ms or 0) <= now_ms]
        if not ended:
            return None
        self.silences = {i: s for i, s in self.silences.items() if (s.until_ms or 0) > now_ms}
        return max(ended)


def _order(action: AlertAction) -> tuple[int, str]:
    return (action.at_ms, action.id)


@dataclass(slots=True)
class Entry:
    """One alert on the board."""

    alert: Alert
    family: str
    group: dict[str, str]
    actions: _Actions
    #: When it last changed: the record timestamp of its alert or the time of an action
    #: (the same on every worker), or when a silence ended.
    changed_ms: int
    resolved_seen_ms: int | None = None  # the record timestamp of its resolution
    state: str = "firing"  # as of the last `judge`

    def judge(self, now_ms: int) -> str:
        """The board state now (docs/CONSOLE.md, "Board states")."""
        alert, actions = self.alert, self.actions
        if alert.state == "resolved":
            return "resolved"
        if actions.silence(now_ms) is not None:
            return "silenced"
        if alert.starts_at_ms in actions.acks:
            return "acknowledged"
        return "flapping" if alert.flapping else "firing"

    def as_json(self, now_ms: int) -> dict[str, Any]:
        alert, actions = self.alert, self.actions
        evidence = alert.evidence
        ack = actions.acks.get(alert.starts_at_ms)
        silence = actions.silence(now_ms) if alert.state == "firing" else None
        last = actions.last
        comments = sorted(actions.comments.values(), key=_order)
        return {
            "fingerprint": alert.fingerprint,
            "rule": alert.rule,
            "family": self.family,
            "severity": alert.labels.get("severity", ""),
            "state": self.judge(now_ms),
            "alert_state": alert.state,
            "flapping": alert.flapping,
            "kind": alert.kind,
            "labels": alert.labels,
            "group": self.group,
            "summary_vi": alert.annotations.get("summary_vi", ""),
            "summary_en": alert.annotations.get("summary_en", ""),
            "value": evidence.value,
            "threshold": evidence.threshold,
            "window": alert.annotations.get("window"),
            "starts_at_ms": alert.starts_at_ms,
            "ends_at_ms": alert.ends_at_ms,
            "first_seen_ms": alert.starts_at_ms,
            "changed_ms": self.changed_ms,
            "evidence": evidence.to_dict(),
            "acked_by": None if ack is None else ack.user,
            "silenced_by": None if silence is None else silence.user,
            "silenced_until_ms": None if silence is None else silence.until_ms,
            "silence_reason": None if silence is None else silence.reason,
            "last_action": None
            if last is None
            else {"action": last.action, "user": last.user, "at_ms": last.at_ms},
            "comments": [{"user": c.user, "at_ms": c.at_ms, "text": c.text} for c in comments],
        }


@dataclass(frozen=True, slots=True)
class Filters:
    """What the operator looks for; every part optional (empty: all)."""

    family: frozenset[str] = frozenset()
    severity: frozenset[str] = frozenset()
    district: frozenset[str] = frozenset()
    state: frozenset[str] = frozenset()
    text: str = ""

    def admit(self, entry: Entry) -> bool:
        alert = entry.alert
        if self.family and entry.family not in self.family:
            return False
        if self.severity and alert.labels.get("severity", "") not in self.severity:
            return False
        if self.state and entry.state not in self.state:
            return False
        if self.district and not any(
            alert.labels.get(name) in self.district for name in DISTRICT_LABELS
        ):
            return False
        if self.text:
            needle = self.text.casefold()
            haystack = [
                alert.annotations.get("summary_vi", ""),
                alert.annotations.get("summary_en", ""),
                *alert.labels.values(),
            ]
            if not any(needle in text.casefold() for text in haystack):
                return False
        return True


class Board:
    """Every alert this worker knows, with the actions taken on it."""

    def __init__(
        self,
        families: Mapping[str, str],
        fixed_labels: Mapping[str, Iterable[str]] | None = None,
        *,
        resolved_keep_ms: int = 900_000,
        max_alerts: int = 50_000,
    ) -> None:
        #: rule → family; rule → its fixed labels (not the group's)
        self.families = dict(families)
        self._fixed = {rule: frozenset(names) for rule, names in (fixed_labels or {}).items()}
        self.resolved_keep_ms = resolved_keep_ms
        self.max_alerts = max_alerts
        self.entries: dict[str, Entry] = {}
        self._orphans: OrderedDict[str, _Actions] = OrderedDict()
        self.seq = 0
        self._changes: deque[tuple[int, str]] = deque(maxlen=MAX_CHANGES)
        self.evicted = 0  # entries dropped past max_alerts (since start)
        self.orphans_dropped = 0  # actions' fingerprints dropped waiting for their alert

    # -- folding -------------------------------------------------------------------------

    def apply_alert(self, alert: Alert, stamp_ms: int, now_ms: int) -> bool:
        """Fold one `ioc.alerts` record, produced at `stamp_ms` (its Kafka timestamp: a
        worker that starts reads old resolutions as old); True if the board changed."""
        entry = self.entries.get(alert.fingerprint)
        if entry is None:
            actions = self._orphans.pop(alert.fingerprint, None) or _Actions()
            # Its actions read first count as they would have after it: one time order.
            acted = actions.last.at_ms if actions.last is not None else stamp_ms
            entry = Entry(alert, self._family(alert), self._group(alert), actions, acted)
            self.entries[alert.fingerprint] = entry
            self._evict()
        elif alert.order < entry.alert.order:
            # An older episode's record, read after a newer one: nothing to show, but
            # its time counts as it would have, read first.
            entry.changed_ms = max(entry.changed_ms, stamp_ms)
            return False
        elif alert == entry.alert:
            return False  # a replay
        else:
            entry.alert = alert
        entry.resolved_seen_ms = stamp_ms if alert.state == "resolved" else None
        self._changed(entry, max(stamp_ms, entry.changed_ms), now_ms)
        return True

    def apply_action(self, action: AlertAction, now_ms: int) -> bool:
        """Fold one `ioc.alert-actions` record; True if the board changed."""
        entry = self.entries.get(action.fingerprint)
        if entry is None:
            waiting = self._orphans.get(action.fingerprint)
            if waiting is None:
                waiting = self._orphans[action.fingerprint] = _Actions()
                if len(self._orphans) > MAX_ORPHANS:
                    self._orphans.popitem(last=False)
                    self.orphans_dropped += 1
            waiting.apply(action)
            return False
        if not entry.actions.apply(action):
            return False
        self._changed(entry, max(action.at_ms, entry.changed_ms), now_ms)
        return True

    def tick(self, now_ms: int) -> list[str]:
        """Time passes: silences end, resolved alerts leave once kept long enough.
        Returns the fingerprints removed (their entries changed are in `changes_since`)."""
        removed: list[str] = []
        keep = self.resolved_keep_ms
        for fingerprint, entry in list(self.entries.items()):
            seen = entry.resolved_seen_ms
            if seen is not None and now_ms - seen >= keep:
                del self.entries[fingerprint]
                removed.append(fingerprint)
                self._note(fingerprint)
                continue
            ended = entry.actions.forget_expired(now_ms)
            if entry.judge(now_ms) != entry.state:
                self._changed(entry, max(ended or now_ms, entry.changed_ms), now_ms)
        return removed

    def _changed(self, entry: Entry, changed_ms: int, now_ms: int) -> None:
        entry.changed_ms = changed_ms
        entry.state = entry.judge(now_ms)
        self._note(entry.alert.fingerprint)

    def _note(self, fingerprint: str) -> None:
        self.seq += 1
        self._changes.append((self.seq, fingerprint))

    def _evict(self) -> None:
        """Past `max_alerts`: the oldest resolved leave first, then the oldest firing."""
        excess = len(self.entries) - self.max_alerts
        if excess <= 0:
            return
        ranked = sorted(
            self.entries.values(),
            key=lambda e: (e.alert.state != "resolved", e.changed_ms),
        )
        for entry in ranked[:excess]:
            del self.entries[entry.alert.fingerprint]
            self._note(entry.alert.fingerprint)
            self.evicted += 1

    def _family(self, alert: Alert) -> str:
        return self.families.get(alert.rule, "")

    def _group(self, alert: Alert) -> dict[str, str]:
        fixed = self._fixed.get(alert.rule, frozenset())
        return {
            name: value
            for name, value in alert.labels.items()
            if name not in ("alertname", "severity") and name not in fixed
        }

    # -- reading -------------------------------------------------------------------------

    def silenced(self, fingerprint: str, now_ms: int) -> bool:
        """Whether a console silence holds the alert now (the alert sinks skip it)."""
        entry = self.entries.get(fingerprint)
        actions = entry.actions if entry is not None else self._orphans.get(fingerprint)
        return actions is not None and actions.silence(now_ms) is not None

    def select(self, filters: Filters | None = None) -> list[Entry]:
        """The entries that pass the filters, the most severe and newest first."""
        chosen = [e for e in self.entries.values() if filters is None or filters.admit(e)]
        chosen.sort(key=_rank)
        return chosen

    def counts(self) -> dict[str, dict[str, int]]:
        """Entries not resolved, per family, severity and state."""
        out: dict[str, dict[str, int]] = {"family": {}, "severity": {}, "state": {}}
        for entry in self.entries.values():
            if entry.state == "resolved":
                continue
            for part, value in (
                ("family", entry.family),
                ("severity", entry.alert.labels.get("severity", "")),
                ("state", entry.state),
            ):
                out[part][value] = out[part].get(value, 0) + 1
        return out

    def changes_since(self, seq: int) -> list[str] | None:
        """Fingerprints changed after `seq`, oldest change first, each once; None when
        `seq` is older than the changes remembered (the client needs a snapshot)."""
        if seq > self.seq:
            return None
        if seq == self.seq:
            return []
        changes = self._changes
        if not changes or changes[0][0] > seq + 1:
            return None
        out: dict[str, None] = {}
        for number, fingerprint in changes:
            if number > seq:
                out.pop(fingerprint, None)
                out[fingerprint] = None
        return list(out)


_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
_STATE_RANK = {"firing": 0, "flapping": 0, "acknowledged": 1, "silenced": 2, "resolved": 3}


def _rank(entry: Entry) -> tuple[int, int, int]:
    return (
        _STATE_RANK.get(entry.state, 0),
        _SEVERITY_RANK.get(entry.alert.labels.get("severity", ""), 3),
        -entry.changed_ms,
    )
