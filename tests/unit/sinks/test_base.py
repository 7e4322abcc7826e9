"""sinks/base.py's `SinkConfig`: each sink's configuration builds that sink."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sinks.alertmanager import AlertmanagerConfig, AlertmanagerSink
from sinks.base import SinkConfig
from sinks.timeseries import LineProtocolSink, TimeseriesConfig
from sinks.webhook import WebhookConfig, WebhookSink


def test_each_config_builds_its_sink() -> None:
    timeseries = TimeseriesConfig(name="vm", url="http://vm:8428")
    alertmanager = AlertmanagerConfig(url="http://am:9093", resend_s=30)
    webhook = WebhookConfig(urls=["http://a", "http://b"], secret="k")  # type: ignore[arg-type]
    built = [config.build() for config in (timeseries, alertmanager, webhook)]
    assert [type(sink) for sink in built] == [LineProtocolSink, AlertmanagerSink, WebhookSink]
    assert [(sink.name, sink.topic) for sink in built] == [
        ("vm", "ioc.aggregates"),
        ("alertmanager", "ioc.alerts"),
        ("webhook", "ioc.alerts"),
    ]
    assert built[1].target is alertmanager
    assert built[2].status.extra["urls"] == ["http://a", "http://b"]


def test_configs_are_frozen_refuse_unknown_fields_and_hide_secrets() -> None:
    config = WebhookConfig(urls=["http://a"], secret="s3cret")  # type: ignore[arg-type]
    assert isinstance(config, SinkConfig)
    assert "s3cret" not in repr(config)
    with pytest.raises(ValidationError):
        config.secret = "other"  # type: ignore[assignment,misc]
    with pytest.raises(ValidationError, match="extra"):
        AlertmanagerConfig(url="http://am", remember_s=10)  # type: ignore[call-arg]
    am = AlertmanagerConfig(url="http://am", username="u", password="pw")  # type: ignore[arg-type]
    assert "pw" not in repr(am)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (AlertmanagerConfig(url="http://am", username="u"), "needs both"),
        (
            AlertmanagerConfig(url="http://am", bearer_token="t", username="u", password="p"),
            "exclusive",
        ),
        (AlertmanagerConfig(url="http://am", resend_s=600), "resend_s <= resolved_resend_s"),
        (AlertmanagerConfig(url="am:9093"), "must be http"),
        (WebhookConfig(urls=[], secret="k"), "at least one"),
        (WebhookConfig(urls=["ftp://a"], secret="k"), "must be http"),
        (WebhookConfig(urls=["http://a"], secret=""), "secret is required"),
    ],
)
def test_a_combination_that_cannot_work_is_refused_when_built(
    config: SinkConfig, message: str
) -> None:
    # Refused by the sink, not when the settings are read: the worker reports it as
    # invalid sink settings and does not start.
    with pytest.raises(ValueError, match=message):
        config.build()
