"""The contracts: event, dead-letter, aggregate, window-result, alert and rule models.

One module per event family (models.city, models.services, models.security);
`FAMILIES` (models.families) gives the stage code one way in to each. Declarations
are data: models.aggregates and models.rules with their loaders, models.derived for
the aggregates the engine derives itself. models.errors draws the exception tree.
Nothing here imports a stage, a sink or a Kafka client.
"""

from __future__ import annotations

from models.common import validation_context
from models.deadletter import DeadLetter
from models.errors import InvalidEvent
from models.families import FAMILIES, Event, EventFamily

__all__ = ["FAMILIES", "DeadLetter", "Event", "EventFamily", "InvalidEvent", "validation_context"]
