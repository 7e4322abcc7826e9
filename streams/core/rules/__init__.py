"""Alert rules over events and window results: the pure core of the rule stage.

Detectors turn events into `Observation`s per group; `Lifecycle` runs each group
through pending → firing → resolved (docs/RULES.md) and returns the `Alert` records
of `ioc.alerts`; `render` fills the summaries' `{name}` placeholders.
"""

from __future__ import annotations

from models.alerts import Alert, Evidence, fingerprint
from streams.core.rules.lifecycle import Lifecycle, Observation
from streams.core.rules.template import format_duration, format_value, render

__all__ = [
    "Alert",
    "Evidence",
    "Lifecycle",
    "Observation",
    "fingerprint",
    "format_duration",
    "format_value",
    "render",
]

# The detectors, one class per rule kind (streams.core.rules.detectors).
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

__all__ += [
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
