"""The alert lifecycle of one rule, per group, as Prometheus and Alertmanager run it.

Pure and driven by event time: detectors hand in `Observation`s (the condition of a
group at `at_ms`), the stage calls `advance(now_ms)` as time passes, and both return
the `Alert` records to write to `ioc.alerts`: nothing else.

    inactive ─active─▶ pending ─`for` elapsed─▶ firing ─inactive, keep_firing_for─▶ resolved
                ▲           │ inactive: forgotten,        │ active again within
                └───────────┘ nothing written             └ keep_firing_for: same alert

- pending starts at the first active `at_ms`; that time becomes the alert's
  `starts_at`. It fires when `at_ms − pending_since ≥ for_ms` (`for_ms = 0` fires on
  the first observation). A firing alert is written once; later active observations
  only refresh the evidence kept for its resolved record.
- An inactive observation while firing schedules the resolution at
  `at_ms + keep_firing_for_ms`; an active one before then continues the same alert
  (nothing written). The resolved record has `ends_at` = that resolution time, and the
  annotations and evidence of the last active observation (what the alert was about).
- Ties: an observation at time t is applied before a timer due at t, so an active
  observation exactly at the resolution time keeps the alert, and an inactive one
  exactly when `for` elapses stops it firing.
- Severity and band (observation overrides of the rule's labels) are part of the
  identity. A change while firing resolves the old alert and fires the new one at
  once, both at the observation's time: the group has already passed `for`, and an
  operator should see the escalation when it happens. A change while pending keeps
  the pending clock (the condition has held all along) and fires with the latest.
  Band changes are not counted by the flapping guard: hysteresis in the detector
  (`clear_below`) is what keeps bands steady.
- Flapping guard: each group remembers its firing and resolved transitions within
  `flap_window_ms`. A resolution that would make them more than `flap_limit` is held:
  the alert stays firing and its firing record is written again with `flapping=true`
  (the same identity, so it supersedes the first in a compacted topic). It resolves
  once the condition has stayed inactive for `flap_window_ms` (or keep_firing_for, if
  longer); that resolved record still says `flapping=true`, telling the reader the
  guard delayed it. If instead the condition stays active for `flap_window_ms`, the
  guard lets go and the firing record is written once more with `flapping=false`.
  `flap_window_ms = 0` turns the guard off.
- State is bounded: a group is created by an active observation, and forgotten once it
  is inactive and its last transition has left the flapping window.
- An observation older than the last one applied to its group counts as happening at
  that last time: a group's clock never runs backwards.

Timers (`for`, keep_firing_for, the guard, forgetting) are a heap of due times with
lazy deletion, so `advance` costs only the groups that have something due.
`snapshot`/`restore` carry every group's state (orjson); the changelog takes it group
by group (`group_state`, `load_group`, and `take_touched`: the groups changed since).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from models.alerts import MAX_EVENT_IDS, Alert, AlertState, Evidence, fingerprint, label_value
from streams.core.rules.template import format_duration, format_value, render

__all__ = ["Lifecycle", "Observation"]

_SNAPSHOT_VERSION: Final = 1
Phase = Literal["inactive", "pending", "firing"]
Group = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Observation:
    """A detector's verdict on one group at event time `at_ms`.

    `group`: the values of the rule's `group_by` paths, in order. `severity`: None means
    the rule's severity; `band`: an extra label (a threshold band such as `poor`).
    The rest is evidence for the alert record; only the first MAX_EVENT_IDS ids are kept.
    """

    group: tuple[Any, ...]
    active: bool
    at_ms: int
    value: float | None = None
    severity: str | None = None
    band: str | None = None
    threshold: float | None = None
    window_start_ms: int | None = None
    window_end_ms: int | None = None
    event_ids: tuple[str, ...] = ()
    count: int | None = None


class _State:
    """One group's lifecycle. `since_ms` is pending_since, then the alert's starts_at."""

    __slots__ = (
        "band",
        "changed_ms",
        "clear_ms",
        "fingerprint",
        "flapping",
        "labels",
        "last",
        "order",
        "phase",
        "scheduled",
        "seen_ms",
        "severity",
        "since_ms",
        "transitions",
    )

    def __init__(self, last: Observation, severity: str, order: str) -> None:
        self.phase: Phase = "inactive"
        self.since_ms = last.at_ms
        self.clear_ms: int | None = None  # when the condition stopped while firing
        self.changed_ms = last.at_ms  # when the condition last changed (for the guard)
        self.seen_ms = last.at_ms  # the latest observation applied: the group's clock
        self.flapping = False
        self.severity = severity
        self.band = last.band
        self.last = last  # the last active observation: evidence and annotations
        self.transitions: list[int] = []  # firing/resolved times within the flap window
        self.scheduled: int | None = None  # the due time this group has in the heap
        self.order = order  # the group as JSON: breaks ties between groups, stably
        self.labels: dict[str, str] | None = None  # cached for (severity, band)
        self.fingerprint = ""


class Lifecycle:
    """Every group's alert state for one rule. Not thread-safe; times are epoch ms.

    Call `update` with each observation and `advance` as event time (or the idle
    watermark) moves on; write what they return, in order. Feed the observations up to
    a time before advancing to it, or a timer may act on a condition already changed.
    """

    def __init__(
        self,
        *,
        rule: str,
        kind: str,
        group_by: Sequence[str],
        severity: str,
        for_ms: int = 0,
        keep_firing_for_ms: int = 0,
        flap_limit: int = 4,
        flap_window_ms: int = 1_800_000,
        labels: Mapping[str, str] | None = None,
        summary_vi: str = "",
        summary_en: str = "",
        window_ms: int | None = None,
    ) -> None:
        if min(for_ms, keep_firing_for_ms, flap_limit, flap_window_ms) < 0:
            raise ValueError("for, keep_firing_for, flap limit and flap window must be >= 0")
        self.rule = rule
        self.kind = kind
        self.group_by = tuple(group_by)
        self.severity = severity
        self.for_ms = for_ms
        self.keep_firing_for_ms = keep_firing_for_ms
        self.flap_limit = flap_limit
        self.flap_window_ms = flap_window_ms
        self.labels = dict(labels or {})
        self.summary_vi = summary_vi
        self.summary_en = summary_en
        self.window_ms = window_ms
        self._window = None if window_ms is None else format_duration(window_ms)
        self._groups: dict[Group, _State] = {}
        self._heap: list[tuple[int, str, Group]] = []
        self._touched: set[Group] = set()  # changed (or forgotten) since `take_touched`

    def __len__(self) -> int:
        """Groups held: pending, firing, or remembered by the flapping guard."""
        return len(self._groups)

    def firing_by_severity(self) -> dict[str, int]:
        """Groups whose alert is firing now (a resolution held by keep_firing_for or the
        flapping guard included), by severity. Read-only; for /metrics."""
        counts: dict[str, int] = {}
        for state in self._groups.values():
            if state.phase == "firing":
                counts[state.severity] = counts.get(state.severity, 0) + 1
        return counts

    # -- input ---------------------------------------------------------------------------

    def update(self, obs: Observation) -> list[Alert]:
        """Apply one observation; return the records it causes (timers of its group
        due before `obs.at_ms` act first)."""
        if len(obs.group) != len(self.group_by):
            raise ValueError(
                f"rule {self.rule!r}: observation group {obs.group!r} does not match"
                f" group_by {list(self.group_by)}"
            )
        key = obs.group
        state = self._groups.get(key)
        if state is None:
            if not obs.active:
                return []  # nothing is known of this group, and nothing is wrong with it
            state = self._groups[key] = _State(obs, self.severity, _order(key))
        self._touched.add(key)
        at = max(obs.at_ms, state.seen_ms)
        out = self._run_due(key, state, at, including_now=False)
        state.seen_ms = at
        if obs.active:
            out += self._activate(key, state, obs, at)
        else:
            _deactivate(state, at)
        out += self._run_due(key, state, at, including_now=True)
        self._settle(key, state)
        return out

    def advance(self, now_ms: int) -> list[Alert]:
        """Let event time reach `now_ms`: timers due by then act, in time order."""
        out: list[Alert] = []
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            due, _, key = heapq.heappop(heap)
            state = self._groups.get(key)
            if state is None or state.scheduled != due:
                continue  # superseded: the group changed after this was scheduled
            state.scheduled = None
            state.seen_ms = max(state.seen_ms, due)
            self._touched.add(key)
            out += self._step(key, state, due)
            self._settle(key, state)
        if len(heap) > 2 * len(self._groups) + 64:
            self._reschedule_all()  # drop superseded entries so the heap stays bounded
        return out

    # -- transitions ---------------------------------------------------------------------

    def _activate(self, key: Group, state: _State, obs: Observation, at: int) -> list[Alert]:
        severity = obs.severity or self.severity
        relabelled = (severity, obs.band) != (state.severity, state.band)
        out: list[Alert] = []
        if state.phase == "inactive":
            state.phase = "pending"
            state.since_ms = state.changed_ms = at
        elif state.phase == "firing":
            if state.clear_ms is not None:
                state.clear_ms = None
                state.changed_ms = at
            if relabelled:  # escalation: the old labels' alert ends, the new one starts now
                out.append(self._record(key, state, "resolved", ends_at_ms=at))
                state.since_ms = at
        if relabelled:
            state.severity, state.band, state.labels = severity, obs.band, None
        state.last = obs
        if relabelled and state.phase == "firing":
            out.append(self._record(key, state, "firing"))
        return out

    def _due(self, state: _State) -> int | None:
        """When the group's next timer acts, if it has one."""
        if state.phase == "pending":
            return state.since_ms + self.for_ms
        if state.phase == "firing":
            if state.clear_ms is not None:
                hold = self.keep_firing_for_ms
                if state.flapping:
                    hold = max(hold, self.flap_window_ms)
                return state.clear_ms + hold
            if state.flapping:  # active and steady for the window: the guard lets go
                return state.changed_ms + self.flap_window_ms
            return None
        if state.transitions:  # inactive: forget once the guard no longer needs it
            return max(state.transitions) + self.flap_window_ms
        return None

    def _step(self, key: Group, state: _State, due: int) -> list[Alert]:
        """Act on the timer due at `due`."""
        if state.phase == "pending":
            state.phase = "firing"
            self._transition(state, due)
            return [self._record(key, state, "firing")]
        if state.phase == "firing":
            if state.clear_ms is None:
                state.flapping = False
                return [self._record(key, state, "firing")]
            if not state.flapping and self._would_flap(state, due):
                state.flapping = True
                return [self._record(key, state, "firing")]
            resolved = self._record(key, state, "resolved", ends_at_ms=due)
            state.phase, state.clear_ms, state.flapping = "inactive", None, False
            self._transition(state, due)
            return [resolved]
        _forget_before(state, due - self.flap_window_ms)
        return []

    def _run_due(self, key: Group, state: _State, now: int, *, including_now: bool) -> list[Alert]:
        out: list[Alert] = []
        while (due := self._due(state)) is not None and (
            due < now or (including_now and due == now)
        ):
            out += self._step(key, state, due)
        return out

    def _would_flap(self, state: _State, at: int) -> bool:
        if not self.flap_window_ms:
            return False
        recent = sum(1 for t in state.transitions if t > at - self.flap_window_ms)
        return recent + 1 > self.flap_limit

    def _transition(self, state: _State, at: int) -> None:
        if self.flap_window_ms:
            _forget_before(state, at - self.flap_window_ms)
            state.transitions.append(at)

    def _settle(self, key: Group, state: _State) -> None:
        """After a change: forget the group if nothing needs it, else (re)schedule it."""
        if state.phase == "inactive" and not state.transitions:
            del self._groups[key]
            return
        due = self._due(state)
        if due != state.scheduled:
            state.scheduled = due
            if due is not None:
                heapq.heappush(self._heap, (due, state.order, key))

    def _reschedule_all(self) -> None:
        self._heap = []
        for key, state in list(self._groups.items()):
            state.scheduled = None
            self._settle(key, state)

    # -- records -------------------------------------------------------------------------

    def _record(
        self, key: Group, state: _State, status: AlertState, *, ends_at_ms: int | None = None
    ) -> Alert:
        if state.labels is None:
            state.labels = self._labels(key, state.severity, state.band)
            state.fingerprint = fingerprint(state.labels)
        obs = state.last
        return Alert(
            fingerprint=state.fingerprint,
            state=status,
            starts_at_ms=state.since_ms,
            ends_at_ms=ends_at_ms,
            labels=state.labels,
            annotations=self._annotations(key, state, obs),
            kind=self.kind,
            flapping=state.flapping,
            evidence=Evidence(
                value=obs.value,
                threshold=obs.threshold,
                window_start=obs.window_start_ms,
                window_end=obs.window_end_ms,
                event_ids=obs.event_ids[:MAX_EVENT_IDS],
                count=obs.count,
            ),
        )

    def _labels(self, key: Group, severity: str, band: str | None) -> dict[str, str]:
        """alertname, severity (and band), the group, the rule's labels. The rule's labels
        override a group label of the same name (as in Prometheus); alertname, severity
        and band override both, since they decide what the alert is."""
        labels = {"alertname": self.rule, "severity": severity}
        if band is not None:
            labels["band"] = band
        labels |= {name: label_value(value) for name, value in zip(self.group_by, key, strict=True)}
        labels |= self.labels
        labels |= {"alertname": self.rule, "severity": severity}
        if band is not None:
            labels["band"] = band
        return labels

    def _annotations(self, key: Group, state: _State, obs: Observation) -> dict[str, str]:
        values: dict[str, object] = dict(self.labels)
        values.update(zip(self.group_by, key, strict=True))
        values.update(
            value=obs.value,
            threshold=obs.threshold,
            window=self._window,
            rule=self.rule,
            severity=state.severity,
            band=state.band,
        )
        annotations = {
            "summary_vi": render(self.summary_vi, values),
            "summary_en": render(self.summary_en, values),
        }
        if obs.value is not None:
            annotations["value"] = format_value(obs.value)
        if obs.threshold is not None:
            annotations["threshold"] = format_value(obs.threshold)
        if self._window is not None:
            annotations["window"] = self._window
        return annotations

    # -- changelog -----------------------------------------------------------------------

    def groups(self) -> Iterable[Group]:
        """The groups held."""
        return self._groups.keys()

    def take_touched(self) -> set[Group]:
        """The groups changed (or forgotten) since the last call."""
        touched, self._touched = self._touched, set()
        return touched

    def rule_state(self) -> Any:
        """What is not any one group's: which rule, which layout."""
        return {"version": _SNAPSHOT_VERSION, "rule": self.rule}

    def load_rule_state(self, doc: Any) -> None:
        """Start a restore: no groups yet. ValueError for another rule or layout."""
        if doc.get("version") != _SNAPSHOT_VERSION or doc.get("rule") != self.rule:
            raise ValueError(
                f"snapshot of rule {doc.get('rule')!r} version {doc.get('version')!r}"
                f" cannot restore rule {self.rule!r} version {_SNAPSHOT_VERSION}"
            )
        self._groups, self._heap = {}, []

    def group_state(self, group: Group) -> dict[str, Any] | None:
        """One group's state as JSON; None if it is not held."""
        state = self._groups.get(group)
        if state is None:
            return None
        saved = _dump(group, state)
        del saved["group"]  # the group record holds it once (it may be long)
        return saved

    def load_group(self, group: Group, saved: Mapping[str, Any]) -> None:
        """One group of a restore; call `finish_restore` after the last."""
        _, state = _load({**saved, "group": group})
        self._groups[group] = state

    def finish_restore(self) -> None:
        self._reschedule_all()

    def snapshot(self) -> bytes:
        """Every group's state as JSON: `restore` on a fresh Lifecycle of the same rule
        continues exactly where this one is."""
        return orjson.dumps(
            {
                "version": _SNAPSHOT_VERSION,
                "rule": self.rule,
                "groups": [_dump(key, state) for key, state in self._groups.items()],
            }
        )

    def restore(self, data: bytes) -> None:
        """Replace all state with a snapshot's. ValueError if it is another rule's or
        another layout's."""
        snapshot = orjson.loads(data)
        if snapshot.get("version") != _SNAPSHOT_VERSION or snapshot.get("rule") != self.rule:
            raise ValueError(
                f"snapshot of rule {snapshot.get('rule')!r} version {snapshot.get('version')!r}"
                f" cannot restore rule {self.rule!r} version {_SNAPSHOT_VERSION}"
            )
        self._groups = {}
        for saved in snapshot["groups"]:
            key, state = _load(saved)
            self._groups[key] = state
        self._reschedule_all()


def _deactivate(state: _State, at: int) -> None:
    if state.phase == "pending":
        state.phase = "inactive"  # never fired: nothing to write
        state.changed_ms = at
    elif state.phase == "firing" and state.clear_ms is None:
        state.clear_ms = state.changed_ms = at


def _forget_before(state: _State, horizon: int) -> None:
    state.transitions = [t for t in state.transitions if t > horizon]


def _order(key: Group) -> str:
    return orjson.dumps(key).decode()


_OBSERVATION_FIELDS: Final = (
    "active", "at_ms", "value", "severity", "band", "threshold",
    "window_start_ms", "window_end_ms", "event_ids", "count",
)  # fmt: skip


def _dump(key: Group, state: _State) -> dict[str, Any]:
    last = state.last
    return {
        "group": key,
        "phase": state.phase,
        "since_ms": state.since_ms,
        "clear_ms": state.clear_ms,
        "changed_ms": state.changed_ms,
        "seen_ms": state.seen_ms,
        "flapping": state.flapping,
        "severity": state.severity,
        "band": state.band,
        "transitions": state.transitions,
        "last": {name: getattr(last, name) for name in _OBSERVATION_FIELDS},
    }


def _load(saved: Mapping[str, Any]) -> tuple[Group, _State]:
    key = tuple(saved["group"])  # a tuple already when the caller froze it
    last = dict(saved["last"])
    last["event_ids"] = tuple(last["event_ids"])
    state = _State(Observation(group=key, **last), saved["severity"], _order(key))
    state.phase = saved["phase"]
    state.since_ms = saved["since_ms"]
    state.clear_ms = saved["clear_ms"]
    state.changed_ms = saved["changed_ms"]
    state.seen_ms = saved["seen_ms"]
    state.flapping = saved["flapping"]
    state.band = saved["band"]
    state.transitions = list(saved["transitions"])
    return key, state
