"""Local Kafka brokers for a developer's machine: the embedded Tansu broker
(`embedded`) and one real Apache Kafka node (`apache`), both behind `LocalBroker`."""

from __future__ import annotations

import subprocess
from typing import IO

from models.errors import BrokerError
from streams.devtools.brokers.apache import ApacheKafkaBroker
from streams.devtools.brokers.embedded import EmbeddedBroker
from streams.devtools.brokers.process import LocalBroker, kafka_answers
from streams.worker.settings import BrokerSettings

__all__ = [
    "ApacheKafkaBroker",
    "BrokerError",
    "EmbeddedBroker",
    "LocalBroker",
    "kafka_answers",
    "local_broker",
]


def local_broker(
    settings: BrokerSettings, log: IO[bytes] | int | None = subprocess.DEVNULL
) -> LocalBroker:
    """The broker `settings.kind` names, not yet started."""
    if settings.kind == "apache":
        return ApacheKafkaBroker(
            settings.host, settings.port, settings.controller_port,
            kafka_version=settings.kafka_version, log=log,
        )  # fmt: skip
    return EmbeddedBroker(settings.host, settings.port, log=log)
