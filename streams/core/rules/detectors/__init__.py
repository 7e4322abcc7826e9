"""Rule detectors: one class per rule kind (docs/RULES.md, "Kinds"), pure state.

Each detector keeps state per group key (a tuple of the group_by values) and turns
what the engine extracts from events into `Observation`s for the alert lifecycle:

    detector = CountDetector(window_ms=300_000, gte=10)
    detector.observe(("10.0.0.7",), at_ms, event_id)   # → Observation | None
    detector.advance(watermark_ms)                      # → [Observation, …]

- Times are event-time epoch ms. A window of a group is (clock − window, clock], its
  clock the later of the group's latest event time and the last watermark: events
  older than that are ignored, never an error.
- `observe` returns an Observation when the group's condition changes (match and
  sequence: on every match), stamped with the event time of the change; nothing is
  allocated otherwise.
- `advance(watermark_ms)` reports what time alone changes (windows sliding, silence,
  matches going stale) and forgets groups with nothing left in their window, at the
  cost of the groups whose deadline passed only.
- `snapshot()`/`restore(bytes)`: the state as JSON, for the changelog; restoring a
  snapshot of other parameters raises ValueError.

Modules by family: `counting` (count, distinct), `ratio`, `values` (threshold, rate,
baseline), `events` (absence, sequence, match).
"""

from streams.core.rules.detectors.counting import CountDetector, DistinctDetector
from streams.core.rules.detectors.events import AbsenceDetector, MatchDetector, SequenceDetector
from streams.core.rules.detectors.ratio import RatioDetector
from streams.core.rules.detectors.values import (
    BaselineDetector,
    LevelBand,
    RateDetector,
    ThresholdDetector,
)

__all__ = [
    "AbsenceDetector",
    "BaselineDetector",
    "CountDetector",
    "DistinctDetector",
    "LevelBand",
    "MatchDetector",
    "RateDetector",
    "RatioDetector",
    "SequenceDetector",
    "ThresholdDetector",
]
