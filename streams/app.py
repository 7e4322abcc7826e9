"""The Faust application, built from the one settings object."""

from __future__ import annotations

from typing import Any

import faust
from prometheus_client import generate_latest

from streams.kafka import ssl_context
from streams.metrics import Metrics
from streams.outbox import KafkaOutbox, Outbox
from streams.settings import KafkaSettings, Settings
from streams.stages import ingest

__all__ = ["IocApp", "create_app"]

# Prometheus text format 0.0.4; aiohttp refuses a charset inside content_type.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"


class IocApp(faust.App):
    """A Faust app that carries the settings and metrics its stages were built with."""

    settings: Settings
    metrics: Metrics

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        # Faust would leave the worker alive but idle after an agent crash; a bug in
        # a stage must stop the worker loudly instead (bad input never gets here).
        await super()._on_agent_error(agent, exc)
        await self.crash(exc)


def _credentials(kafka: KafkaSettings) -> Any:
    context = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL"):
        assert kafka.sasl_password is not None  # checked by KafkaSettings
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def create_app(
    settings: Settings, metrics: Metrics | None = None, outbox: Outbox | None = None
) -> IocApp:
    kafka = settings.kafka
    app = IocApp(
        settings.app_id,
        broker=[f"ioc://{server.strip()}" for server in kafka.bootstrap.split(",")],
        broker_credentials=_credentials(kafka),
        broker_session_timeout=kafka.session_timeout_s,
        broker_heartbeat_interval=kafka.heartbeat_interval_s,
        broker_commit_interval=kafka.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        producer_linger=kafka.linger_ms / 1000,
        producer_max_batch_size=kafka.max_batch_bytes,
        datadir=str(settings.data_dir),
        web_host=settings.web.host,
        web_port=settings.web.port,
        web_in_thread=False,
        autodiscover=False,
    )
    app.settings = settings
    app.metrics = metrics if metrics is not None else Metrics()
    stage_outbox = outbox if outbox is not None else KafkaOutbox(app)

    ingest.register(app, settings, app.metrics, stage_outbox)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(app.metrics.registry), content_type=METRICS_CONTENT_TYPE)

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        """200 once partitions are assigned and no rebalance is under way, else 503."""
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
        ready = bool(assigned) and not app.rebalancing
        return web.json(
            {"status": "ok" if ready else "starting", "assigned": assigned},
            status=200 if ready else 503,
        )

    return app
