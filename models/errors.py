"""Every error this project raises on purpose, under one root.

IocError
├── ConfigError (ValueError)     a declaration or settings file is invalid; `.problems`
│   │                            lists every problem, one per line of the message
│   ├── AggregateConfigError     an aggregates file (models.aggregates)
│   ├── RuleConfigError          a rules file (models.rulefile)
│   └── SinkConfigError          a sink section of the settings (streams.worker.app)
├── ContractError (ValueError)   a record breaks the wire contract: dead-letter it
│   ├── InvalidEvent             one event (or a whole message) is rejected at ingest
│   ├── EventTimeError           a validated event without a readable event time, or
│   │                            one outside the range windows can represent
│   │                            (streams.core.windows.plan, .engine)
│   ├── GroupFieldMissing        a validated event without a group_by field of an
│   │                            aggregate declared `missing_group: reject`
│   └── RecordTooLarge           a record a stage would produce exceeds
│                                IOC_KAFKA__MAX_RECORD_BYTES: the input that made
│                                it is dead-lettered `too_large` (stages.base)
├── SinkError                    a sink could not deliver one record
│   ├── TransientError           no answer (refused, reset, timeout): retry (sinks.http)
│   └── EncodeError (ValueError) the record cannot be one point (sinks.lineprotocol)
└── InfrastructureError (RuntimeError)   something outside the code is not working
    ├── DeliveryFailed           Kafka refused a record a stage produced
    │                            (streams.worker.stages.base)
    ├── BrokerError              a local broker did not start or answer
    │                            (streams.devtools.brokers)
    └── ServerError              a local server is not installed, did not start or
                                 did not answer (streams.devtools.servers)

The builtin in brackets is a second base, kept so that `except ValueError` and
`except RuntimeError` catch what they always caught.

InvalidEvent carries what the dead letter records:
  .error              machine-readable kind: json | schema | too_large | too_deep
  .reason             human-readable, naming the field path:
                      "pm25: value is not a finite number"
  .field              the path of the first offending field, if any
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AggregateConfigError",
    "BrokerError",
    "ConfigError",
    "ContractError",
    "DeliveryFailed",
    "EncodeError",
    "EventTimeError",
    "GroupFieldMissing",
    "InfrastructureError",
    "InvalidEvent",
    "IocError",
    "RecordTooLarge",
    "RuleConfigError",
    "ServerError",
    "SinkConfigError",
    "SinkError",
    "TransientError",
]


class IocError(Exception):
    """The root: catch it to handle any error of this project's own."""


# -- configuration ---------------------------------------------------------------------


class ConfigError(IocError, ValueError):
    """A declaration file is invalid; the message lists every problem, one per line.

    `problems` is one problem (a string) or a list of them."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class AggregateConfigError(ConfigError):
    """An aggregates file is invalid; the message lists every problem, one per line."""


class RuleConfigError(ConfigError):
    """A rules file is invalid; the message lists every problem, one per line."""


class SinkConfigError(ConfigError):
    """A sink section of the settings that cannot work."""


# -- the wire contract -----------------------------------------------------------------


class ContractError(IocError, ValueError):
    """A record breaks the wire contract: it goes to the dead-letter topic."""


class InvalidEvent(ContractError):
    """Raised by the family parsers; the ingest stage turns it into a dead letter."""

    def __init__(self, reason: str, *, error: str = "schema", field: str | None = None) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.field = field


class EventTimeError(ContractError):
    """An event without a readable event time: not something ingest lets through, so
    the stage should dead-letter it (error `schema`) rather than stop."""


class GroupFieldMissing(ContractError):
    """A validated event lacks a group_by field of an aggregate that rejects such
    events (`missing_group: reject`): dead-letter it (error `schema`); the message
    names the field and the aggregate."""


# -- sinks -----------------------------------------------------------------------------


class SinkError(IocError):
    """A sink could not deliver one record."""


class TransientError(SinkError):
    """The request got no answer (connection refused or reset, timeout)."""


class EncodeError(SinkError, ValueError):
    """The record cannot be one point (malformed, or a statistic of the wrong type)."""


# -- infrastructure --------------------------------------------------------------------


class RecordTooLarge(ContractError):
    """A record to produce is larger than the record limit: the input it came from is
    dead-lettered `too_large`, never sent to fail the whole producer batch."""


class InfrastructureError(IocError, RuntimeError):
    """Something outside the code (Kafka, a local server) is not working."""


class DeliveryFailed(InfrastructureError):
    """Kafka refused a record the stage produced: a bug or a broker problem, never input."""


class BrokerError(InfrastructureError):
    """The broker did not start or answer; the message says what to check."""


class ServerError(InfrastructureError):
    """A local server is not installed, did not start or did not answer."""
