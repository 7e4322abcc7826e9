"""Rule evaluation for one partition of `<app>-rules-inputs`: detectors, then lifecycles.

Pure: `RuleInput`s in (streams.core.rules.plan), `Alert`s out, time given by the caller.
Every input of a (rule, group) comes to the same partition, so a group's whole story
is here. Time is event time, and each rule has its own: the frontier of the sources
that feed it (its family's events, or its aggregate's finals), from the progress
records the router forwards (`observe_progress`, streams.core.progress), minus
`allowed_lateness_ms`. A security backlog does not hold back the city's rules, the
city's progress does not make security inputs late, and an absence is judged only
against the progress of its own sources. Once a rule follows progress, an input older
than its watermark is late (`process` returns it as a `LateInput`, for a dead letter).

A rule that follows progress also judges its inputs in event-time order, whatever
order they were read in (Flink CEP's sorting by watermark): an input ahead of the
watermark waits in the rule's pending heap, and `advance` applies those the watermark
has passed, oldest first (ties broken by the input itself, so the order is the same
live and in `ioc backtest`), each after the timers due before it. Inputs of one
device read from two source partitions, or finals from two window partitions, then
give the same alerts as the recording sorted by time. The price is latency: an alert
comes once its rule's watermark passes the input that raised it. The inputs pending
on a partition are at most `max_pending`; past that the oldest is applied at once
(counted in `overflowed`). They are state: the checkpoint keeps which input offsets
were pending (`@pending`, a bitmap), and a recovered partition re-reads from the
oldest of them, skipping what was already applied (`skip`); its time waits until it has
read them all again (`restoring`).

A rule none of whose sources has sent progress (inputs from a foreign producer, or
`ioc backtest`) keeps the older rule: the newest input time of that rule minus the
lateness; when no input has come for `idle_timeout_ms` of wall clock, `advance` moves
it on with the wall clock from where the last input left it.

State is checkpointed per rule group: `<rule>/<group>` → that group's detector state,
lifecycle and sums (`group_key`; None, a deletion, once the rule holds nothing of the
group), written only for the groups that changed since the last checkpoint, beside a
small `<rule>` record of what is rule-wide (the detector's definition and watermark).
One rule with 100,000 groups is 100,000 small records, never one document past the
broker's record limit. `@meta` keeps the rules' clocks and the sources' frontiers,
`@pending` the pending offsets. A `<rule>` record of the older layout (the whole rule
as one document) is still read, and written out group by group at the next checkpoint.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from models.alerts import Alert
from models.rules import (
    AbsenceRule,
    BaselineRule,
    CountRule,
    DistinctRule,
    FieldRef,
    MatchRule,
    RateRule,
    RatioRule,
    Rule,
    SequenceRule,
    ThresholdRule,
)
from streams.core.progress import NEVER, Frontier, Progress
from streams.core.rules.detectors import (
    AbsenceDetector,
    BaselineDetector,
    CountDetector,
    DistinctDetector,
    LevelBand,
    MatchDetector,
    RateDetector,
    RatioDetector,
    SequenceDetector,
    ThresholdDetector,
)
from streams.core.rules.detectors._base import Group, freeze
from streams.core.rules.lifecycle import Lifecycle, Observation
from streams.core.rules.plan import FIRST, THEN, RuleInput
from streams.core.sizing import kept

__all__ = ["BadInput", "LateInput", "RuleEngine", "RuleEvaluator", "group_key"]

META: Final = "@meta"
PENDING: Final = "@pending"
#: The `format` of a rule record whose groups have records of their own.
GROUPED: Final = 2
#: The longest group JSON a changelog key spells out; longer ones are hashed.
GROUP_KEY_CHARS: Final = 200
_NEVER: Final = -(1 << 62)

Detector = Any  # the detector classes share advance/snapshot/restore, not a base


@dataclass(frozen=True, slots=True)
class LateInput:
    """An input older than its rule's watermark: it changed nothing."""

    rule: str
    at_ms: int
    watermark_ms: int
    #: A window final behind its feed's frontier: the window stage reports finals in
    #: order and only ahead of the frontier it announced, so this one it reported
    #: before, again (after a crash or a handover restored it to an older checkpoint).
    replay: bool = False


@dataclass(frozen=True, slots=True)
class BadInput:
    """A pending input its detector refused when its turn came (wrong shape: only a
    foreign producer writes one), for the caller to dead-letter."""

    item: RuleInput
    offset: int | None
    reason: str
    error: str = "schema"  # or `internal`: a bug met on this input (per-record isolation)


#: A pending input: (event time, the input as JSON for a deterministic tie-break,
#: arrival number, the input, its offset on the partition or None, its record's
#: timestamp or None).
_Pending = tuple[int, bytes, int, RuleInput, int | None, int | None]


def feed_of(rule: Rule) -> tuple[str, str]:
    """The (kind, feed) of the progress a rule's time follows (streams.core.progress)."""
    if rule.aggregate is not None:
        return "aggregates", rule.aggregate
    return "events", rule.family or ""


class _Clock:
    """One rule's event time on one partition."""

    __slots__ = (
        "active_wall_ms", "following", "late_before", "newest_ms", "pending", "watermark",
        "watermark_at_active",
    )  # fmt: skip

    def __init__(self) -> None:
        #: Whether the watermark follows its feed's progress; only then is an input
        #: behind it late. Without progress (yet) the watermark is the newest input's, and
        #: inputs from partitions behind others are judged by the detectors, as before.
        self.following = False
        #: The feed's progress − lateness: what is older is late. Apart from `watermark`,
        #: which may have run ahead on the newest input before progress reached the rule.
        self.late_before = _NEVER
        self.newest_ms = _NEVER  # newest input time seen (the rule without progress)
        self.watermark = _NEVER
        self.active_wall_ms: int | None = None  # wall clock of the last input
        self.watermark_at_active = _NEVER
        #: Inputs ahead of the watermark, oldest first (only while following).
        self.pending: list[_Pending] = []

    def dump(self) -> list[int]:
        return [self.newest_ms, self.watermark, int(self.following), self.late_before]


def _detector(rule: Rule, max_groups: int | None = None) -> Detector:
    """The detector of a rule's kind, from its validated config; `max_groups` bounds
    the groups of the detectors that keep quiet groups (absence)."""
    if isinstance(rule, CountRule):
        return CountDetector(rule.window, rule.gte)
    if isinstance(rule, DistinctRule):
        return DistinctDetector(rule.window, rule.gte)
    if isinstance(rule, RateRule):
        return RateDetector(rule.window, rise=rule.rise, fall=rule.fall)
    if isinstance(rule, RatioRule):
        return RatioDetector(
            rule.window, below=rule.below, above=rule.above, min_events=rule.min_events
        )
    if isinstance(rule, SequenceRule):
        return SequenceDetector(rule.within, rule.first_count)
    if isinstance(rule, MatchRule):
        return MatchDetector()
    if isinstance(rule, BaselineRule):
        return BaselineDetector(rule.sigmas, rule.min_samples, season=rule.season)
    if isinstance(rule, ThresholdRule):
        return _threshold(rule)
    assert isinstance(rule, AbsenceRule)
    return AbsenceDetector(rule.after, rule.forget_after, max_groups)


def _threshold(rule: ThresholdRule) -> ThresholdDetector:
    if rule.bands:
        bands = [
            LevelBand(b.severity, _level(b.above), _level(b.clear_below), b.label)
            for b in rule.bands
        ]
        return ThresholdDetector(bands, "above")
    if rule.above is not None:
        band = LevelBand(rule.severity, _level(rule.above), _level(rule.clear_below))
        return ThresholdDetector([band], "above")
    band = LevelBand(rule.severity, _level(rule.below), _level(rule.clear_above))
    return ThresholdDetector([band], "below")


def _level(level: Any) -> float | None:
    """A fixed level as a number; None for a level read from each event."""
    return None if level is None or isinstance(level, FieldRef) else float(level)


def _window_ms(rule: Rule) -> int | None:
    for name in ("window", "within", "after"):
        value = getattr(rule, name, None)
        if isinstance(value, int):
            return value
    return None


class RuleEvaluator:
    """One rule on one partition: its detector, the sums of an aggregate rule that
    drops labels, and the lifecycle of its alerts."""

    __slots__ = (
        "_sums", "_touched", "_written", "clock", "detector", "feed", "kind", "lifecycle",
        "name", "summing",
    )  # fmt: skip

    def __init__(self, rule: Rule, summing: bool, max_groups: int | None = None) -> None:
        self.name = rule.name
        self.kind = rule.kind
        self.feed = feed_of(rule)
        self.clock = _Clock()
        self.detector = _detector(rule, max_groups)
        self.summing = summing
        # group → member (the dropped labels' values, as JSON) → its latest figure
        self._sums: dict[tuple[Any, ...], dict[str, float]] = {}
        #: Groups an input changed since the last checkpoint (the detector and the
        #: lifecycle note those that time changed), and the groups the changelog holds.
        self._touched: set[Group] = set()
        self._written: set[Group] = set()
        self.lifecycle = Lifecycle(
            rule=rule.name, kind=rule.kind, group_by=rule.group_by, severity=rule.severity,
            for_ms=rule.for_, keep_firing_for_ms=rule.keep_firing_for,
            flap_limit=rule.flap.limit, flap_window_ms=rule.flap.window,
            labels=rule.labels, summary_vi=rule.summary.vi, summary_en=rule.summary.en,
            window_ms=_window_ms(rule),
        )  # fmt: skip

    def observe(self, item: RuleInput) -> Observation | None:
        """Feed one input to the detector; raises ValueError/TypeError on an input of
        the wrong shape (the stage dead-letters it)."""
        kind, group, at_ms, figure = self.kind, item.group, item.at_ms, item.figure
        self._touched.add(group)
        event_id = item.event_id or ""
        detector = self.detector
        if kind == "count" or kind == "match":
            return detector.observe(group, at_ms, event_id)
        if kind == "absence":
            return detector.observe(group, at_ms)
        if kind == "distinct":
            return detector.observe(group, at_ms, figure, event_id)
        if kind == "ratio":
            return detector.observe(group, at_ms, bool(figure), event_id)
        if kind == "sequence":
            if figure & FIRST:
                detector.observe_first(group, at_ms, event_id)
            if figure & THEN:
                return detector.observe_then(group, at_ms, event_id)
            return None
        if self.summing:
            member, value = figure
            members = self._sums.setdefault(group, {})
            members[orjson.dumps(member).decode()] = float(value)
            figure = sum(members.values())
        if kind == "threshold" and type(figure) is list:
            value, level = figure
            return detector.observe(group, at_ms, float(value), float(level))
        return detector.observe(group, at_ms, float(figure))

    def evictions(self) -> list[Alert]:
        """The alert changes of absences that the group limit ended (absence rules)."""
        out: list[Alert] = []
        for observation in self.detector.take_ended():
            out += self.lifecycle.update(observation)
        return out

    # -- the changelog: one record per group, one for the rule ---------------------------

    def rule_record(self) -> bytes:
        """What is not any one group's: the detector's definition and watermark."""
        return orjson.dumps(
            {
                "format": GROUPED,
                "detector": self.detector.rule_state(),
                "lifecycle": self.lifecycle.rule_state(),
            }
        )

    def group_record(self, group: Group) -> bytes | None:
        """One group's detector, lifecycle and sums; None once it holds none."""
        detector = self.detector.group_state(group)
        lifecycle = self.lifecycle.group_state(group)
        sums = self._sums.get(group)
        if detector is None and lifecycle is None and sums is None:
            return None
        doc = {"group": group, "detector": detector, "lifecycle": lifecycle, "sums": sums}
        return orjson.dumps(doc)

    def take_dirty(self, rule_changed: bool) -> list[tuple[str, bytes | None]]:
        """(key, payload or None for a deletion) of the groups changed since the last
        call, and the rule's record if anything changed; a group never written is not
        deleted."""
        touched = self._touched | self.detector.take_touched() | self.lifecycle.take_touched()
        self._touched = set()
        if not touched and not rule_changed:
            return []
        out: list[tuple[str, bytes | None]] = [(self.name, self.rule_record())]
        written = self._written
        for group in sorted(touched, key=_order):
            payload = self.group_record(group)
            if payload is not None:
                written.add(group)
            elif group in written:
                written.discard(group)
            else:
                continue  # came and went between two checkpoints
            out.append((group_key(self.name, group), None if payload is None else kept(payload)))
        return out

    def restore_grouped(self, rule_doc: Any, groups: list[bytes]) -> None:
        """Load a rule record and its group records. ValueError/KeyError/TypeError if
        they do not fit this rule's definition (the caller starts it afresh)."""
        if rule_doc.get("format") != GROUPED:
            raise ValueError(f"not a grouped rule record: format {rule_doc.get('format')!r}")
        self.detector.load_rule_state(rule_doc["detector"])
        self.lifecycle.load_rule_state(rule_doc["lifecycle"])
        self._sums = {}
        for payload in groups:
            doc = orjson.loads(payload)
            group = freeze(doc["group"])
            if doc["detector"] is not None:
                self.detector.load_group(group, doc["detector"])
            if doc["lifecycle"] is not None:
                self.lifecycle.load_group(group, doc["lifecycle"])
            if doc["sums"] is not None:
                self._sums[group] = doc["sums"]
            self._written.add(group)
        self.detector.finish_restore()
        self.lifecycle.finish_restore()

    def restore_whole(self, doc: Any) -> None:
        """Load a checkpoint written before groups had records of their own (one
        document per rule); every group is then written anew at the next checkpoint."""
        self.detector.restore(orjson.dumps(doc["detector"]))
        self.lifecycle.restore(orjson.dumps(doc["lifecycle"]))
        self._sums = {freeze(group): members for group, members in doc["sums"]}
        self._touched |= self.held_groups()

    def held_groups(self) -> set[Group]:
        """Every group any part of the rule's state holds."""
        return set(self._sums) | set(self.lifecycle.groups()) | set(self.detector.groups())

    def snapshot(self) -> bytes:
        """The whole rule as one document (the layout before group records; tests)."""
        sums = [[list(group), members] for group, members in self._sums.items()]
        return b'{"detector":%b,"lifecycle":%b,"sums":%b}' % (
            self.detector.snapshot(),
            self.lifecycle.snapshot(),
            orjson.dumps(sums),
        )


def _order(group: Group) -> bytes:
    return orjson.dumps(group)


def group_key(rule: str, group: Group) -> str:
    """A group's changelog key, `<rule>/<group as JSON>`: readable, and bounded (a group
    whose JSON is longer than GROUP_KEY_CHARS is named by its SHA-256 instead; the group
    itself is in the record)."""
    text = orjson.dumps(group).decode()
    if len(text) > GROUP_KEY_CHARS:
        text = "#" + hashlib.sha256(text.encode()).hexdigest()
    return f"{rule}/{text}"


class RuleEngine:
    """Every rule, for one partition of `<app>-rules-inputs`."""

    def __init__(
        self,
        rules: Iterable[Rule],
        summing: Iterable[str] = (),
        *,
        allowed_lateness_ms: int = 0,
        idle_timeout_ms: int = 30_000,
        max_pending: int = 1_000_000,
        start_lags: dict[str, int] | None = None,
        max_groups: int | None = None,
    ) -> None:
        self._rules = {rule.name: rule for rule in rules}
        self._summed = set(summing)
        #: The most groups an absence rule keeps on this partition (None: no limit).
        self.max_groups = max_groups
        self.evaluators = {name: self._fresh(name) for name in self._rules}
        self.allowed_lateness_ms = allowed_lateness_ms
        self.idle_timeout_ms = idle_timeout_ms
        self.progress = Progress()
        self._dirty: set[str] = set()
        self._meta_dirty = False
        self.max_pending = max_pending
        #: rule → how far behind its feed's frontier its inputs' times are: a rule over
        #: finals timed by window start (a baseline's slot) lags by the window size.
        self.start_lags = start_lags or {}
        self.pending_offsets: set[int] = set()  # offsets of the inputs pending, all rules
        self.pending = 0  # inputs pending, all rules
        self.overflowed = 0  # inputs applied ahead of their turn: the pending limit
        self.replayed = 0  # inputs dropped as a copy of one pending (an upstream replay)
        self._arrivals = 0
        self._pending_dirty = False
        #: Inputs the detectors refused when their turn came (drained by the caller).
        self.bad: list[BadInput] = []
        #: Record timestamps of the inputs whose turn raised a firing alert (drained by
        #: the caller, for the alert latency).
        self.fired_stamps: list[int] = []
        # After a restore: below `_replay_until`, only the offsets in `_replay_keep`
        # (pending at the checkpoint) are to be read again.
        self.resume_from: int | None = None
        self._replay_until = -1
        self._replay_keep: set[int] = set()
        self._replay_last: int | None = None  # the last of them
        #: The end (`to`) of the pending bitmap last checkpointed or restored; None: none.
        self._pending_to: int | None = None

    def _fresh(self, name: str) -> RuleEvaluator:
        return RuleEvaluator(self._rules[name], name in self._summed, self.max_groups)

    def watermark(self, rule: str) -> int | None:
        """A rule's watermark (epoch ms), None before it has one."""
        mark = self.evaluators[rule].clock.watermark
        return None if mark == _NEVER else mark

    def observe_progress(self, frontiers: list[Frontier]) -> None:
        """A progress record read on the partition (the next `advance` follows it). A
        rule whose feed it names follows progress from now on: the inputs read after
        it wait for their turn, even before the next `advance`."""
        if self.progress.observe(frontiers):
            self._meta_dirty = True
            for evaluator in self.evaluators.values():
                if not evaluator.clock.following:
                    kind, feed = evaluator.feed
                    evaluator.clock.following = self.progress.frontier(kind, feed) is not None

    def skip(self, offset: int) -> bool:
        """Whether the input at `offset` was applied before the checkpoint this engine
        was restored from (read again only because an older one was still pending)."""
        return offset < self._replay_until and offset not in self._replay_keep

    def rereading(self, offset: int) -> bool:
        """Whether the input at `offset` is one pending at the checkpoint, read again."""
        return offset < self._replay_until and offset in self._replay_keep

    def restoring(self, position: int) -> bool:
        """Whether inputs pending at the checkpoint this engine was restored from are
        still to be read again, reading on from `position`. Until they are, its time must
        not move (`advance`): the restored progress is the checkpoint's, ahead of them,
        and would judge them late, or let the timers they come before act first."""
        return self._replay_last is not None and position <= self._replay_last

    def process(
        self, item: RuleInput, now_ms: int, offset: int | None = None, stamp: int | None = None
    ) -> list[Alert] | LateInput:
        """One input: its alert changes (none while it waits for its turn), or a
        LateInput. `offset` (its place on the partition) makes a pending input part of
        the checkpoint; `stamp` (its record's timestamp) measures alert latency. Raises
        KeyError for an unknown rule and, when applied at once, ValueError/TypeError
        for an input of the wrong shape (neither comes from the router)."""
        evaluator = self.evaluators[item.rule]
        clock = evaluator.clock
        if clock.following and item.at_ms < clock.late_before:
            replay = evaluator.feed[0] == "aggregates"
            return LateInput(item.rule, item.at_ms, clock.late_before, replay)
        self._dirty.add(item.rule)
        if item.at_ms > clock.newest_ms:
            clock.newest_ms = item.at_ms
            self._meta_dirty = True
        clock.active_wall_ms = now_ms
        clock.watermark_at_active = max(clock.watermark, clock.newest_ms - self.allowed_lateness_ms)
        if clock.following and item.at_ms > clock.watermark:
            self._arrivals += 1
            entry = (item.at_ms, kept(item.to_json()), self._arrivals, item, offset, stamp)
            heapq.heappush(clock.pending, entry)
            self.pending += 1
            if offset is not None:
                self.pending_offsets.add(offset)
                self._pending_dirty = True
            if self.pending <= self.max_pending:
                return []
            self.overflowed += 1
            out: list[Alert] = []
            self._apply(evaluator, self._pop(clock), out, timers=False)
            return out
        observation = evaluator.observe(item)
        out = [] if observation is None else evaluator.lifecycle.update(observation)
        if evaluator.kind == "absence":
            out += evaluator.evictions()
        return out

    def _pop(self, clock: _Clock) -> _Pending:
        entry = heapq.heappop(clock.pending)
        self._forget(entry)
        # The same input twice (a stage upstream replayed what it had sent before a
        # crash) sorts next to itself: it counts once.
        pending = clock.pending
        while pending and pending[0][0] == entry[0] and pending[0][1] == entry[1]:
            self._forget(heapq.heappop(pending))
            self.replayed += 1
        return entry

    def _forget(self, entry: _Pending) -> None:
        self.pending -= 1
        if entry[4] is not None:
            self.pending_offsets.discard(entry[4])
            self._pending_dirty = True

    def _apply(
        self, evaluator: RuleEvaluator, entry: _Pending, out: list[Alert], timers: bool = True
    ) -> None:
        """A pending input's turn: the timers due before it act, then it is observed.
        Without `timers` (applied ahead of the watermark), time stays where the
        watermark is: inputs older than this one may still come."""
        at_ms, _, _, item, offset, stamp = entry
        lifecycle = evaluator.lifecycle
        if timers:
            for observation in evaluator.detector.advance(at_ms - 1):
                out += lifecycle.update(observation)
            out += lifecycle.advance(at_ms - 1)
        try:
            observation = evaluator.observe(item)
        except (ValueError, TypeError) as exc:
            self.bad.append(BadInput(item, offset, f"not a rule input: {exc!r}"))
            return
        except Exception as exc:  # noqa: BLE001 - a bug: this input alone is dead-lettered
            reason = f"internal error in rules: {type(exc).__name__}: {str(exc)[:500]}"
            self.bad.append(BadInput(item, offset, reason, "internal"))
            return
        if evaluator.kind == "absence":
            out += evaluator.evictions()
        if observation is None:
            return
        changes = lifecycle.update(observation)
        if stamp is not None and any(alert.state == "firing" for alert in changes):
            self.fired_stamps.append(stamp)
        out += changes

    def take_forgotten(self) -> dict[tuple[str, str], int]:
        """(rule, reason) → groups absence rules dropped since the last call: reason
        `forget_after` (silent that long) or `max_groups` (evicted past the limit)."""
        out: dict[tuple[str, str], int] = {}
        for name, evaluator in self.evaluators.items():
            detector = evaluator.detector
            if evaluator.kind != "absence":
                continue
            if detector.forgotten:
                out[name, "forget_after"] = detector.forgotten
                detector.forgotten = 0
            if detector.evicted:
                out[name, "max_groups"] = detector.evicted
                detector.evicted = 0
        return out

    def group_counts(self) -> dict[str, int]:
        """rule → groups its detector holds on this partition."""
        return {name: len(evaluator.detector) for name, evaluator in self.evaluators.items()}

    def keep_alive(self, now_ms: int) -> None:
        """Not idle although nothing came: inputs are still waiting to be read, or the
        partition was just recovered (its idle clock starts now, not before a crash)."""
        for evaluator in self.evaluators.values():
            clock = evaluator.clock
            if clock.newest_ms != _NEVER:
                clock.active_wall_ms = now_ms
                clock.watermark_at_active = max(
                    clock.watermark, clock.newest_ms - self.allowed_lateness_ms
                )

    def _target(self, evaluator: RuleEvaluator, now_ms: int) -> int:
        """Where the rule's watermark should be now. Finals are exact: the window stage
        sends their frontier once it has taken its own lateness into account, so a rule
        over an aggregate follows it without another allowance."""
        kind, feed = evaluator.feed
        frontier = self.progress.frontier(kind, feed)
        clock = evaluator.clock
        clock.following = frontier is not None
        if frontier is not None:
            if frontier == NEVER:
                return _NEVER
            if kind == "aggregates":
                return frontier - self.start_lags.get(evaluator.name, 0)
            return frontier - self.allowed_lateness_ms
        target = clock.newest_ms - self.allowed_lateness_ms
        if clock.active_wall_ms is not None:
            idle = now_ms - clock.active_wall_ms - self.idle_timeout_ms
            if idle > 0:
                target = max(target, clock.watermark_at_active + idle)
        return target

    def advance(self, now_ms: int) -> list[Alert]:
        """Time passes (called about once a second with the wall clock): windows slide,
        silences become absences, `for` and keep_firing_for run out."""
        out: list[Alert] = []
        for name, evaluator in self.evaluators.items():
            watermark = self._target(evaluator, now_ms)
            clock = evaluator.clock
            if not clock.following and clock.pending:
                # Its sources went quiet for good (all idle, never an event): inputs
                # are judged as they come again, so those waiting are judged now.
                self._dirty.add(name)
                while clock.pending:
                    self._apply(evaluator, self._pop(clock), out, timers=False)
            if clock.following and watermark > clock.late_before:
                clock.late_before = watermark
            if watermark <= clock.watermark:
                continue
            clock.watermark = watermark
            self._meta_dirty = True
            self._dirty.add(name)  # the detector's watermark, in the rule's record
            pending = clock.pending
            if pending and pending[0][0] <= watermark:
                self._dirty.add(name)
                while pending and pending[0][0] <= watermark:
                    self._apply(evaluator, self._pop(clock), out)
            observations = evaluator.detector.advance(watermark)
            lifecycle = evaluator.lifecycle
            for observation in observations:
                out += lifecycle.update(observation)
            changes = lifecycle.advance(watermark)
            out += changes
            if observations or changes:
                self._dirty.add(name)
        return out

    def drain(self) -> list[Alert]:
        """Apply every pending input now, in order, without moving the watermarks: the
        end of a recording (`ioc backtest`), after which nothing older can come."""
        out: list[Alert] = []
        for name, evaluator in self.evaluators.items():
            if evaluator.clock.pending:
                self._dirty.add(name)
            while evaluator.clock.pending:
                self._apply(evaluator, self._pop(evaluator.clock), out)
        return out

    # -- state ---------------------------------------------------------------------------

    def take_dirty(self, position: int | None = None) -> list[tuple[str, bytes | None]]:
        """(state key, payload or None: deleted) of what changed since the last call;
        `position` is the next offset to read, up to which the pending bitmap is taken.

        Keys: `<rule>` (rule-wide, small), `<rule>/<group>` (one per group changed: see
        `group_key`), `@pending`, `@meta`. No record grows with the number of groups."""
        dirty: list[tuple[str, bytes | None]] = []
        for name in sorted(self.evaluators):
            dirty += self.evaluators[name].take_dirty(name in self._dirty)
        if position is not None and (
            self._pending_dirty or (self._pending_to is not None and self._pending_to < position)
        ):
            # Also when only the position moved: below the bitmap's end is what it names,
            # above it what was applied; a restore would read that span again.
            dirty.append((PENDING, self._pending_record(position)))
            self._pending_dirty = False
        if self._meta_dirty:
            clocks = {name: e.clock.dump() for name, e in self.evaluators.items()}
            meta = {"clocks": clocks, "sources": self.progress.dump()}
            dirty.append((META, orjson.dumps(meta)))
        self._dirty.clear()
        self._meta_dirty = False
        return dirty

    def _pending_record(self, position: int) -> bytes:
        """Which offsets below `position` are pending: the oldest, and a bitmap from it.

        While a restored engine is still reading again what was pending at its checkpoint
        (`position` below `_replay_until`), the inputs of that checkpoint not read again
        yet are pending too, and what lies between them up to `_replay_until` was applied
        before it: the bitmap keeps both, or a second restore would lose the first and
        apply the second twice."""
        offsets = self.pending_offsets
        until = position
        if position < self._replay_until:
            offsets = offsets | {offset for offset in self._replay_keep if offset >= position}
            until = self._replay_until
        if not offsets:
            if until == position:
                self._pending_to = None
                return b"{}"
            start = until  # nothing pending: read on from the end of what was applied
        else:
            start = min(offsets)
        bits = bytearray((until - start + 7) // 8)
        for offset in offsets:
            index = offset - start
            bits[index >> 3] |= 1 << (index & 7)
        packed = base64.b64encode(zlib.compress(bytes(bits))).decode()
        self._pending_to = until
        return orjson.dumps({"from": start, "to": until, "bits": packed})

    def _load_pending(self, payload: bytes) -> None:
        doc = orjson.loads(payload)
        if not doc:
            return
        start, bits = doc["from"], zlib.decompress(base64.b64decode(doc["bits"]))
        self.resume_from, self._replay_until = start, doc["to"]
        self._pending_to = doc["to"]
        self._replay_keep = {
            start + index for index in range(len(bits) * 8) if bits[index >> 3] & (1 << (index & 7))
        }
        self._replay_last = max(self._replay_keep, default=None)

    def restore(self, items: Iterable[tuple[str, bytes]]) -> list[str]:
        """Load checkpointed state; returns the keys of rules that no longer exist (their
        rule and group records), for the caller to tombstone. A rule whose definition
        changed so that its state no longer fits its detector starts afresh (its group
        records are returned too). Reads the per-rule documents of older checkpoints;
        the next checkpoint writes them out group by group."""
        stale: list[str] = []
        meta: Any = None
        rules: dict[str, tuple[bytes | None, list[tuple[str, bytes]]]] = {}
        for key, payload in items:
            if key == META:
                meta = orjson.loads(payload)
                continue
            if key == PENDING:
                self._load_pending(payload)
                continue
            name, slash, _ = key.partition("/")
            record, groups = rules.setdefault(name, (None, []))
            if slash:
                groups.append((key, payload))
            else:
                rules[name] = (payload, groups)
        for name, (record, groups) in rules.items():
            evaluator = self.evaluators.get(name)
            if evaluator is None:
                stale += [key for key, _ in groups]
                if record is not None:
                    stale.append(name)
                continue
            try:
                if record is None:
                    raise ValueError(f"group records of {name} without its rule record")
                doc = orjson.loads(record)
                if "format" in doc:
                    evaluator.restore_grouped(doc, [payload for _, payload in groups])
                else:
                    evaluator.restore_whole(doc)
                    stale += [key for key, _ in groups]  # none expected beside a whole one
            except (ValueError, KeyError, TypeError):
                self.evaluators[name] = self._fresh(name)
                self._dirty.add(name)
                stale += [key for key, _ in groups]
        if type(meta) is list:  # written before each rule had its clock: one for all
            newest, watermark = meta
            meta = {"clocks": {name: [newest, watermark] for name in self.evaluators}}
        if type(meta) is dict:
            self.progress.load(meta.get("sources", []))
            for name, dumped in meta.get("clocks", {}).items():
                evaluator = self.evaluators.get(name)
                if evaluator is not None:
                    clock = evaluator.clock
                    clock.newest_ms, clock.watermark = dumped[0], dumped[1]
                    clock.watermark_at_active = clock.watermark
                    if len(dumped) == 4:  # older checkpoints kept only the first two
                        clock.following, clock.late_before = bool(dumped[2]), dumped[3]
        return stale
