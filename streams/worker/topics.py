"""Topic names: the stage boundaries of docs/ARCHITECTURE.md. Every arrow is a Kafka topic."""

from __future__ import annotations

from typing import Final

from models.families import FAMILY_NAMES, Family

#: What integrators produce to (docs/EVENTS.md).
SOURCE: Final[dict[Family, str]] = {
    "city": "ioc.city.observations",
    "services": "ioc.services.events",
    "security": "ioc.security.events",
}

#: Validated, normalised events, keyed by entity: the seam the window and rule stages read.
VALIDATED: Final[dict[Family, str]] = {family: f"ioc.{family}.validated" for family in FAMILY_NAMES}

DEADLETTER: Final = "ioc.deadletter"
AGGREGATES: Final = "ioc.aggregates"
ALERTS: Final = "ioc.alerts"
ALERT_ACTIONS: Final = "ioc.alert-actions"

ALL: Final[tuple[str, ...]] = (
    *SOURCE.values(),
    *VALIDATED.values(),
    DEADLETTER,
    AGGREGATES,
    ALERTS,
    ALERT_ACTIONS,
)


def faust_leader(app_id: str) -> str:
    """The topic Faust's leader assignor uses (one partition)."""
    return f"{app_id}-__assignor-__leader"


def changelog(app_id: str, stage: str) -> str:
    """A stage's compacted state topic (streams.worker.changelog)."""
    return f"{app_id}-{stage}-changelog"


def rule_inputs(app_id: str) -> str:
    """Rule inputs keyed by (rule, group), so that one group's inputs meet on one
    partition: internal to one app, like its changelogs."""
    return f"{app_id}-rules-inputs"
