"""The worker's web server as create_app configures it, without starting it."""

from __future__ import annotations

from typing import cast

from faust.web.drivers.aiohttp import Web as AiohttpWeb
from prometheus_client import CollectorRegistry

from sinks.alertmanager import AlertmanagerConfig
from sinks.webhook import WebhookConfig
from streams.worker.app import create_app, sink_status
from streams.worker.metrics import SinkCollector
from streams.worker.settings import Settings, SinksSettings, WebSettings

SECRET_HOOK = "https://hooks.example/services/T000/B000/XXXXSECRET?token=abcdef123"


def test_the_server_binds_the_configured_host_and_serves_only_our_pages() -> None:
    app = create_app(Settings(_env_file=None, web=WebSettings(host="127.0.0.2", port=6067)))
    assert (app.conf.web_bind, app.conf.web_port) == ("127.0.0.2", 6067)
    web = cast(AiohttpWeb, app.web)
    web.init_server()
    routes = {resource.canonical for resource in web.web_app.router.resources()}
    # Ours and the console's; none of Faust's (/router, /table, /graph, its own /…).
    assert routes == {
        "/health", "/metrics", "/sinks", "/login", "/logout", "/api/session", "/", "/static",
        "/api/alerts", "/api/alerts/stream", "/api/alerts/{fingerprint}/{action}", "/api/figures",
    }  # fmt: skip


def test_sinks_page_shows_no_secret_of_a_url() -> None:
    sinks = SinksSettings(
        webhook=WebhookConfig(urls=[SECRET_HOOK], secret="k"),
        alertmanager=AlertmanagerConfig(url="http://ioc:pa55word@am:9093", max_alerts=10),
    )
    app = create_app(Settings(_env_file=None, sinks=sinks))
    shown = {str(sink_status(stage.sink)) for stage in app.stages if hasattr(stage, "sink")}
    assert len(shown) == 2
    for text in shown:
        assert "XXXXSECRET" not in text and "abcdef123" not in text and "pa55word" not in text
    assert "https://hooks.example/services/***/***/***?token=***" in "".join(shown)
    assert "'evicted': 0" in "".join(shown)  # the Alertmanager sink's bound


def test_evicted_alerts_are_a_metric_of_the_sinks_that_remember_them() -> None:
    sinks = SinksSettings(
        webhook=WebhookConfig(urls=["http://bot"], secret="k"),
        alertmanager=AlertmanagerConfig(url="http://am:9093"),
    )
    app = create_app(Settings(_env_file=None, sinks=sinks))
    built = [stage.sink for stage in app.stages if hasattr(stage, "sink")]
    registry = CollectorRegistry()
    registry.register(SinkCollector(lambda: built))
    [am] = [sink for sink in built if sink.name == "alertmanager"]
    am.status.evicted = 3
    assert registry.get_sample_value("ioc_sink_alerts_evicted_total", {"sink": "alertmanager"}) == 3
    assert registry.get_sample_value("ioc_sink_alerts_evicted_total", {"sink": "webhook"}) is None
