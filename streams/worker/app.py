"""The Faust application, built from the one settings object.

Faust hosts the stages: the worker process, its signals and shutdown, the web server
(`/metrics`, `/health`, `/sinks` and the operators' console, bound to
`IOC_WEB__HOST`; none of Faust's own pages) and Kafka security settings. The stages
themselves consume in batches (streams.worker.stages.base explains why).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.web.base import BlueprintManager
from prometheus_client import generate_latest

from models.errors import SinkConfigError
from sinks.base import Sink
from streams.core.board import Board
from streams.worker.configuration import configured
from streams.worker.console.auth import Auth
from streams.worker.console.auth import install as install_access
from streams.worker.console.feed import BoardCollector, BoardFeed
from streams.worker.console.figures import FiguresFeed
from streams.worker.console.mirror import mirror_silences
from streams.worker.console.routes import install as install_console
from streams.worker.kafka import ssl_context
from streams.worker.metrics import (
    AlertCollector,
    LagCollector,
    LatestCollector,
    Metrics,
    SinkCollector,
    WatermarkCollector,
)
from streams.worker.settings import KafkaSettings, Settings
from streams.worker.stages.base import BatchStage
from streams.worker.stages.cases import CaseStage
from streams.worker.stages.ingest import IngestStage
from streams.worker.stages.rules import RuleRouter, RuleStage
from streams.worker.stages.sinks import SinkStage
from streams.worker.stages.windows import WindowStage

__all__ = ["IocApp", "configured_sinks", "create_app"]

log = logging.getLogger(__name__)

# Prometheus text format 0.0.4; aiohttp refuses a charset inside content_type.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"


class IocApp(faust.App):
    """A Faust app that carries the settings, metrics and stages it was built with."""

    settings: Settings
    metrics: Metrics
    stages: list[BatchStage]
    board_feed: BoardFeed
    figures: FiguresFeed


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


def create_app(settings: Settings, metrics: Metrics | None = None) -> IocApp:
    kafka = settings.kafka
    app = IocApp(
        settings.app_id,
        broker=[f"ioc://{server.strip()}" for server in kafka.bootstrap.split(",")],
        broker_credentials=_credentials(kafka),
        broker_session_timeout=kafka.session_timeout_s,
        broker_heartbeat_interval=kafka.heartbeat_interval_s,
        broker_commit_interval=kafka.commit_interval_s,
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        datadir=str(settings.data_dir),
        # Faust listens on `web_bind` (default 0.0.0.0); `web_host` only names the
        # worker in its canonical URL.
        web_bind=settings.web.host,
        web_host=settings.web.host,
        web_port=settings.web.port,
        web_in_thread=False,
        autodiscover=False,
    )
    # None of Faust's own pages (`/`, `/router`, `/table`, statistics…): they show
    # the topology and table contents to anyone who can reach the port, and the
    # stages keep no Faust tables. Only the pages below are served.
    app.web.blueprints = BlueprintManager()
    app.settings = settings
    app.metrics = metrics if metrics is not None else Metrics()
    configuration = configured(settings)
    aggregates, rules = configuration.aggregates, configuration.rules
    if left_out := configuration.left_out_rules():
        log.warning(
            "default rules on aggregates not in %s left out: %s",
            configuration.aggregates_file,
            ", ".join(left_out),
        )
    window_stage = WindowStage(settings, app.metrics, aggregates, on_crash=app.crash)
    case_stage = CaseStage(settings, app.metrics, on_crash=app.crash)
    app.figures = window_stage.finals_to = case_stage.finals_to = FiguresFeed(settings, aggregates)
    rule_stage = RuleStage(settings, app.metrics, rules, aggregates, on_crash=app.crash)
    app.stages = [
        IngestStage(settings, app.metrics, on_crash=app.crash),
        window_stage,
        case_stage,
        RuleRouter(settings, app.metrics, rules, aggregates, on_crash=app.crash),
        rule_stage,
    ]
    # The console: every worker folds all alerts and actions into its board.
    board = Board(
        rule_stage.families,
        {rule.name: rule.labels.keys() for rule in rules},
        resolved_keep_ms=int(settings.console.resolved_keep_s * 1000),
        max_alerts=settings.console.max_alerts,
    )
    app.board_feed = BoardFeed(settings, board, on_crash=app.crash)
    sink_stages = [
        SinkStage(settings, app.metrics, sink, silenced=board.silenced, on_crash=app.crash)
        for sink in configured_sinks(settings)
    ]
    app.stages += sink_stages
    if settings.sinks.alertmanager is not None:
        mirror_silences(app, settings.sinks.alertmanager)
    # Read at scrape time: state the stages hold anyway, nothing counted per record.
    registry = app.metrics.registry
    registry.register(SinkCollector(lambda: [stage.sink for stage in sink_stages]))
    registry.register(LagCollector(lambda: app.stages))
    registry.register(WatermarkCollector(lambda: app.stages))
    registry.register(AlertCollector(lambda: [rule_stage]))
    registry.register(LatestCollector(window_stage.latest))

    @app.task
    async def start_stages() -> None:
        # Runtime dependencies start now and stop with the app; stopping a stage
        # writes its last checkpoint. Each joins its own consumer group: together, not
        # one after the other, so the worker is ready after one join, not three.
        await asyncio.gather(
            app.add_runtime_dependency(app.board_feed),
            app.add_runtime_dependency(app.figures),
            *(app.add_runtime_dependency(stage) for stage in app.stages),
        )

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(app.metrics.registry), content_type=METRICS_CONTENT_TYPE)

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        """200 once every stage has joined its consumer group and runs, else 503. A stage
        whose every record has failed for a while is `failing`: busy, achieving nothing."""
        stages = {
            stage.title: "crashed" if stage.crashed
            else "failing" if stage.isolated.failing
            else "ok" if stage.joined else "starting"
            for stage in app.stages
        }  # fmt: skip
        ready = all(state == "ok" for state in stages.values())
        return web.json(
            {"status": "ok" if ready else "unavailable", "stages": stages},
            status=200 if ready else 503,
        )

    @app.page("/sinks")
    async def sinks_page(web: Any, request: Any) -> Any:
        """Each sink's state, last error and counts, as JSON (no secrets)."""
        return web.json({stage.sink.name: sink_status(stage.sink) for stage in sink_stages})

    # Faust's web driver is aiohttp: the console's routes are plain aiohttp handlers.
    web_app = app.web.web_app  # type: ignore[attr-defined]
    install_access(web_app, Auth.from_settings(settings, registry))
    console = install_console(web_app, app.board_feed, app.figures.figures)
    registry.register(BoardCollector(app.board_feed, lambda: console.streams))
    return app


def configured_sinks(settings: Settings) -> list[Sink]:
    """A sink per configured section of `IOC_SINKS__…`; raises SinkConfigError on a
    configuration that cannot work."""
    try:
        return [config.build() for config in settings.sinks.configured()]
    except ValueError as exc:
        raise SinkConfigError(str(exc)) from exc


def sink_status(sink: Sink) -> dict[str, Any]:
    """What `/sinks` shows of a sink. URLs in it are the sinks' own, redacted by them
    (sinks/redaction.py): tokens in a URL's path or query never appear."""
    status = sink.status
    shown: dict[str, Any] = {
        "topic": sink.topic, "state": status.state, "last_error": status.last_error,
        "queued": status.queued, "written": status.written, "retries": status.retries,
        "rejected": status.rejected, **status.extra,
    }  # fmt: skip
    if status.evicted is not None:
        shown["evicted"] = status.evicted
    return shown
