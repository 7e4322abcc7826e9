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

A rule none of whose sources has sent progress (inputs from a foreign producer, or
`ioc backtest`) keeps the older rule: the newest input time of that rule minus the
lateness; when no input has come for `idle_timeout_ms` of wall clock, `advance` moves
it on with the wall clock from where the last input left it.

State is checkpointed per rule (`<rule>` → detector, lifecycle and the sums of
aggregate rules as one JSON document) and only for the rules that changed since the
last checkpoint; `@meta` keeps the rules' clocks and the sources' frontiers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from models.alerts import Alert
from models.rules import (
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
from streams.core.rules.detectors._base import freeze
from streams.core.rules.lifecycle import Lifecycle, Observation
from streams.core.rules.plan import FIRST, THEN, RuleInput

__all__ = ["LateInput", "RuleEngine", "RuleEvaluator"]

META: Final = "@meta"
_NEVER: Final = -(1 << 62)

Detector = Any  # the detector classes share advance/snapshot/restore, not a base


@dataclass(frozen=True, slots=True)
class LateInput:
    """An input older than its rule's watermark: it changed nothing."""

    rule: str
    at_ms: int
    watermark_ms: int


def feed_of(rule: Rule) -> tuple[str, str]:
    """The (kind, feed) of the progress a rule's time follows (streams.core.progress)."""
    if rule.aggregate is not None:
        return "aggregates", rule.aggregate
    return "events", rule.family or ""


class _Clock:
    """One rule's event time on one partition."""

    __slots__ = (
        "active_wall_ms", "following", "late_before", "newest_ms", "watermark",
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

    def dump(self) -> list[int]:
        return [self.newest_ms, self.watermark]


def _detector(rule: Rule) -> Detector:
    """The detector of a rule's kind, from its validated config."""
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
    return AbsenceDetector(rule.after)


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

    __slots__ = ("_sums", "clock", "detector", "feed", "kind", "lifecycle", "name", "summing")

    def __init__(self, rule: Rule, summing: bool) -> None:
        self.name = rule.name
        self.kind = rule.kind
        self.feed = feed_of(rule)
        self.clock = _Clock()
        self.detector = _detector(rule)
        self.summing = summing
        # group → member (the dropped labels' values, as JSON) → its latest figure
        self._sums: dict[tuple[Any, ...], dict[str, float]] = {}
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

    def snapshot(self) -> bytes:
        sums = [[list(group), members] for group, members in self._sums.items()]
        return b'{"detector":%b,"lifecycle":%b,"sums":%b}' % (
            self.detector.snapshot(),
            self.lifecycle.snapshot(),
            orjson.dumps(sums),
        )

    def restore(self, payload: bytes) -> None:
        doc = orjson.loads(payload)
        self.detector.restore(orjson.dumps(doc["detector"]))
        self.lifecycle.restore(orjson.dumps(doc["lifecycle"]))
        self._sums = {freeze(group): members for group, members in doc["sums"]}


class RuleEngine:
    """Every rule, for one partition of `<app>-rules-inputs`."""

    def __init__(
        self,
        rules: Iterable[Rule],
        summing: Iterable[str] = (),
        *,
        allowed_lateness_ms: int = 0,
        idle_timeout_ms: int = 30_000,
    ) -> None:
        self._rules = {rule.name: rule for rule in rules}
        self._summed = set(summing)
        self.evaluators = {name: self._fresh(name) for name in self._rules}
        self.allowed_lateness_ms = allowed_lateness_ms
        self.idle_timeout_ms = idle_timeout_ms
        self.progress = Progress()
        self._dirty: set[str] = set()
        self._meta_dirty = False

    def _fresh(self, name: str) -> RuleEvaluator:
        return RuleEvaluator(self._rules[name], name in self._summed)

    def watermark(self, rule: str) -> int | None:
        """A rule's watermark (epoch ms), None before it has one."""
        mark = self.evaluators[rule].clock.watermark
        return None if mark == _NEVER else mark

    def observe_progress(self, frontiers: list[Frontier]) -> None:
        """A progress record read on the partition (the next `advance` follows it)."""
        if self.progress.observe(frontiers):
            self._meta_dirty = True

    def process(self, item: RuleInput, now_ms: int) -> list[Alert] | LateInput:
        """One input: its alert changes, or a LateInput. Raises KeyError for an unknown
        rule and ValueError/TypeError for an input of the wrong shape (neither comes
        from the router)."""
        evaluator = self.evaluators[item.rule]
        clock = evaluator.clock
        if clock.following and item.at_ms < clock.late_before:
            return LateInput(item.rule, item.at_ms, clock.late_before)
        observation = evaluator.observe(item)
        self._dirty.add(item.rule)
        if item.at_ms > clock.newest_ms:
            clock.newest_ms = item.at_ms
            self._meta_dirty = True
        clock.active_wall_ms = now_ms
        clock.watermark_at_active = max(clock.watermark, clock.newest_ms - self.allowed_lateness_ms)
        if observation is None:
            return []
        return evaluator.lifecycle.update(observation)

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
        """Where the rule's watermark should be now."""
        kind, feed = evaluator.feed
        frontier = self.progress.frontier(kind, feed)
        clock = evaluator.clock
        clock.following = frontier is not None
        if frontier is not None:
            return _NEVER if frontier == NEVER else frontier - self.allowed_lateness_ms
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
            # Finals are not judged late yet: a window partition that has not sent its
            # first progress is unknown downstream and does not hold the others back,
            # so its first finals could come behind them (the detectors judge, as before).
            if clock.following and evaluator.feed[0] == "events" and watermark > clock.late_before:
                clock.late_before = watermark
            if watermark <= evaluator.clock.watermark:
                continue
            evaluator.clock.watermark = watermark
            self._meta_dirty = True
            observations = evaluator.detector.advance(watermark)
            lifecycle = evaluator.lifecycle
            for observation in observations:
                out += lifecycle.update(observation)
            changes = lifecycle.advance(watermark)
            out += changes
            if observations or changes:
                self._dirty.add(name)
        return out

    # -- state ---------------------------------------------------------------------------

    def take_dirty(self) -> list[tuple[str, bytes | None]]:
        """(state key, payload) of what changed since the last call."""
        dirty = [(name, self.evaluators[name].snapshot()) for name in sorted(self._dirty)]
        if self._meta_dirty:
            clocks = {name: e.clock.dump() for name, e in self.evaluators.items()}
            meta = {"clocks": clocks, "sources": self.progress.dump()}
            dirty.append((META, orjson.dumps(meta)))
        self._dirty.clear()
        self._meta_dirty = False
        return dirty  # type: ignore[return-value]

    def restore(self, items: Iterable[tuple[str, bytes]]) -> list[str]:
        """Load checkpointed state; returns the keys of rules that no longer exist, for
        the caller to tombstone. A rule whose definition changed so that its state no
        longer fits its detector starts afresh."""
        stale: list[str] = []
        meta: Any = None
        for key, payload in items:
            if key == META:
                meta = orjson.loads(payload)
                continue
            evaluator = self.evaluators.get(key)
            if evaluator is None:
                stale.append(key)
                continue
            try:
                evaluator.restore(payload)
            except (ValueError, KeyError, TypeError):
                self.evaluators[key] = self._fresh(key)
                self._dirty.add(key)
        if type(meta) is list:  # written before each rule had its clock: one for all
            newest, watermark = meta
            meta = {"clocks": {name: [newest, watermark] for name in self.evaluators}}
        if type(meta) is dict:
            self.progress.load(meta.get("sources", []))
            for name, (newest, watermark) in meta.get("clocks", {}).items():
                evaluator = self.evaluators.get(name)
                if evaluator is not None:
                    clock = evaluator.clock
                    clock.newest_ms, clock.watermark = newest, watermark
                    clock.watermark_at_active = watermark
        return stale
