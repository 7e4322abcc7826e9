"""Kafka client options and topic administration shared by every component."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.worker import topics
from streams.worker.changelog import CHANGELOG_CONFIG
from streams.worker.settings import KafkaSettings, Settings

__all__ = ["client_options", "ensure_topics", "ensure_worker_topics", "ssl_context"]

# Explicit configs on every topic we create: some brokers answer DescribeConfigs with
# nothing for topics created without them (docs/BROKERS.md).
TOPIC_CONFIG = {"retention.ms": str(7 * 24 * 3600 * 1000), "cleanup.policy": "delete"}


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    if not kafka.security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(cafile=kafka.ssl_cafile)
    if kafka.ssl_certfile:
        context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
    return context


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap,
        "security_protocol": kafka.security_protocol,
    }
    context = ssl_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    if kafka.security_protocol.startswith("SASL"):
        assert kafka.sasl_password is not None  # checked by KafkaSettings
        options |= {
            "sasl_mechanism": kafka.sasl_mechanism,
            "sasl_plain_username": kafka.sasl_username,
            "sasl_plain_password": kafka.sasl_password.get_secret_value(),
        }
    return options


async def ensure_topics(
    kafka: KafkaSettings,
    names: Iterable[str],
    partitions: int | None = None,
    config: dict[str, str] | None = None,
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                partitions or kafka.partitions,
                kafka.replication_factor,
                topic_configs=config or TOPIC_CONFIG,
            )
            for name in names
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                await admin.create_topics(missing)
    finally:
        await admin.close()


async def ensure_worker_topics(settings: Settings) -> None:
    """Every topic a worker of `settings.app_id` reads or writes, before it starts.

    Topics get explicit configs; Faust would create them without (docs/BROKERS.md)."""
    kafka = settings.kafka
    await ensure_topics(kafka, topics.ALL)
    # Faust creates its leader topic after joining the group, and the metadata change
    # then costs a second join (≈ half the session timeout): create it first.
    await ensure_topics(kafka, [topics.faust_leader(settings.app_id)], partitions=1)
    changelogs = [
        topics.changelog(settings.app_id, stage) for stage in ("windows", "cases", "rules")
    ]
    await ensure_topics(kafka, changelogs, config=CHANGELOG_CONFIG)
    await ensure_topics(kafka, [topics.rule_inputs(settings.app_id)])
