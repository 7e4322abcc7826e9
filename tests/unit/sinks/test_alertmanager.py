from __future__ import annotations

import pytest

from models.timefmt import rfc3339
from sinks.alertmanager import (
    AlertmanagerConfig,
    AlertmanagerSink,
    label_name,
    label_set,
    postable_alert,
)
from sinks.http import Answer
from tests.unit.sinks.helpers import T0, ScriptedPost, alert, record, refused

MIN = 60_000


class Clock:
    def __init__(self, now_ms: int = T0 + 5 * MIN) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def sink(
    post: ScriptedPost, clock: Clock, remember_s: float = 3600.0, **target: object
) -> AlertmanagerSink:
    config = AlertmanagerConfig(url="http://am:9093", **target)
    return AlertmanagerSink(
        config, remember_s=remember_s, post=post, clock=clock, random=lambda: 0.0, sleep=_no_sleep
    )


async def _no_sleep(seconds: float) -> None:
    pass


@pytest.mark.parametrize(
    ("name", "mapped"),
    [
        ("source.ip", "source_ip"),
        ("file.hash.sha256", "file_hash_sha256"),
        ("@timestamp", "timestamp"),
        ("refDevice", "refDevice"),
        ("user-agent", "user_agent"),
        ("1st", "_1st"),
        ("__name__", "_name__"),
        ("đường", "ng"),
        ("", "_"),
    ],
)
def test_label_names(name: str, mapped: str) -> None:
    assert label_name(name) == mapped


def test_label_set_keeps_colliding_names_apart_and_drops_empty_values() -> None:
    item = alert(source_ip="x", organization__name="")
    assert label_set(item) == {
        "alertname": "brute_force",
        "severity": "warning",
        "source_ip": "203.0.113.7",
        "source_ip_2": "x",
    }


def test_postable_firing_alert() -> None:
    now = T0 + 5 * MIN
    payload = postable_alert(
        alert(team="soc"),
        now,
        resend_s=60,
        generator_url="https://ioc.example/alerts/{fingerprint}",
    )
    item = alert(team="soc")
    assert payload == {
        "labels": {
            "alertname": "brute_force",
            "severity": "warning",
            "source_ip": "203.0.113.7",
            "team": "soc",
        },
        "annotations": {
            "summary": "Dò mật khẩu từ 203.0.113.7",
            "description": "Brute force from 203.0.113.7",
            "summary_vi": "Dò mật khẩu từ 203.0.113.7",
            "summary_en": "Brute force from 203.0.113.7",
            "value": "12",
            "threshold": "10",
            "window": "5m",
            "evidence_ids": "e-1,e-2",
            "evidence_count": "12",
            "ioc_fingerprint": item.fingerprint,
            "kind": "count",
            "flapping": "false",
        },
        "startsAt": "2026-11-26T03:00:00Z",
        "endsAt": rfc3339(now + 3 * MIN),  # valid for three re-sends
        "generatorURL": f"https://ioc.example/alerts/{item.fingerprint}",
    }


def test_postable_resolved_alert_and_times_ahead_of_the_wall_clock() -> None:
    resolved = alert("resolved", ends_at_ms=T0 + 2 * MIN)
    payload = postable_alert(resolved, T0 + 5 * MIN, summary_language="en")
    assert (payload["startsAt"], payload["endsAt"]) == (rfc3339(T0), rfc3339(T0 + 2 * MIN))
    assert payload["annotations"]["summary"] == "Brute force from 203.0.113.7"
    assert "generatorURL" not in payload
    # Event time ahead of now (a simulation): taken as now, so it resolves at once.
    ahead = alert("resolved", starts_at_ms=T0 + 9 * MIN, ends_at_ms=T0 + 10 * MIN)
    payload = postable_alert(ahead, T0 + 5 * MIN)
    assert payload["startsAt"] == payload["endsAt"] == rfc3339(T0 + 5 * MIN)


def test_target_checks_and_hides_secrets() -> None:
    with pytest.raises(ValueError, match="exclusive"):
        AlertmanagerConfig(url="http://am", username="u", password="p", bearer_token="t").check()
    with pytest.raises(ValueError, match="both"):
        AlertmanagerConfig(url="http://am", username="u").check()
    target = AlertmanagerConfig(url="http://am", bearer_token="s3cret", password=None)
    assert "s3cret" not in repr(target)


async def test_flush_sends_changes_once_as_one_array_with_auth() -> None:
    post, clock = ScriptedPost(), Clock()
    am = sink(post, clock, username="ioc", password="pw")
    await am.open()
    first, second = alert(), alert(source__ip="198.51.100.9")
    await am.write([record(first, 0), record(second, 1)])
    assert am.status.queued == 2
    assert await am.flush() == []
    [(url, body, headers)] = post.calls
    assert url == "http://am:9093/api/v2/alerts" and len(body) == 2
    assert headers["Authorization"] == "Basic aW9jOnB3"
    assert (am.status.written, am.status.queued, am.status.state) == (2, 0, "up")
    assert "pw" not in str(am.status)
    assert await am.flush() == [] and len(post.calls) == 1  # nothing changed


async def test_bearer_token() -> None:
    post = ScriptedPost()
    am = sink(post, Clock(), bearer_token="tok")
    await am.write([record(alert())])
    await am.flush()
    assert post.calls[0][2]["Authorization"] == "Bearer tok"


async def test_later_state_supersedes_and_older_never_resurrects() -> None:
    post, clock = ScriptedPost(), Clock()
    am = sink(post, clock)
    firing = alert()
    resolved = alert("resolved", ends_at_ms=T0 + 3 * MIN)
    await am.write([record(firing, 0), record(resolved, 1), record(firing, 2)])
    await am.flush()
    [(_, [sent], _)] = post.calls
    assert sent["endsAt"] == rfc3339(T0 + 3 * MIN)  # resolved, not the replayed firing
    assert am.status.written == 3
    # An older episode arriving late changes nothing; a new episode does.
    await am.write([record(alert(starts_at_ms=T0 - 10 * MIN), 3)])
    await am.flush()
    assert len(post.calls) == 1
    await am.write([record(alert(starts_at_ms=T0 + 4 * MIN), 4)])
    await am.flush()
    assert post.calls[1][1][0]["startsAt"] == rfc3339(T0 + 4 * MIN)


async def test_resend_schedule() -> None:
    post, clock = ScriptedPost(), Clock(T0)
    am = sink(post, clock, resend_s=60, resolved_resend_s=300, remember_s=600)
    await am.write([record(alert(), 0)])
    await am.flush()
    await am.tick(T0 + 59_000)
    assert len(post.calls) == 1  # not due yet
    await am.tick(T0 + MIN)
    assert len(post.calls) == 2
    assert post.calls[1][1][0]["endsAt"] == rfc3339(T0 + MIN + 3 * MIN)
    # Resolved at T0 + 2 min: sent by flush, re-sent every minute for five minutes.
    clock.now_ms = T0 + 2 * MIN
    await am.write([record(alert("resolved", ends_at_ms=T0 + 2 * MIN), 1)])
    await am.flush()
    sends = len(post.calls)
    for minute in range(3, 12):
        await am.tick(T0 + minute * MIN)
    assert len(post.calls) - sends == 5  # minutes 3..7
    assert am.status.extra["alerts"] == 1  # remembered against replays …
    await am.write([record(alert(), 2)])  # … so a replayed firing copy is ignored
    await am.flush()
    assert len(post.calls) - sends == 5
    await am.tick(T0 + 18 * MIN)
    assert am.status.extra["alerts"] == 0  # then forgotten


async def test_tick_failure_backs_off_without_blocking() -> None:
    post, clock = ScriptedPost(), Clock(T0)
    am = sink(post, clock)
    await am.write([record(alert())])
    await am.flush()
    post.script = [refused()]
    await am.tick(T0 + MIN)
    assert am.status.state == "retrying" and am.status.retries == 1
    assert "connection refused" in (am.status.last_error or "")
    await am.tick(T0 + MIN + 1000)
    assert am.status.state == "up" and len(post.calls) == 3


async def test_flush_retries_then_succeeds() -> None:
    post = ScriptedPost(refused(), Answer(503), Answer(200))
    am = sink(post, Clock())
    await am.write([record(alert())])
    assert await am.flush() == []
    assert (am.status.retries, am.status.state, len(post.calls)) == (2, "up", 3)


async def test_refused_alert_becomes_a_rejection_and_the_rest_is_sent() -> None:
    bad = alert(source__ip="198.51.100.9")
    answer = "bad label"
    post = ScriptedPost(Answer(400, answer), Answer(200), Answer(400, answer))
    am = sink(post, Clock())
    await am.write([record(alert(), 0), record(bad, 1), record(b"{not json", 2)])
    rejected = await am.flush()
    assert [r.record.offset for r in rejected] == [2, 1]
    assert rejected[1].reason == "alertmanager http://am:9093/api/v2/alerts: HTTP 400: bad label"
    assert "not an ioc.alerts record" in rejected[0].reason
    assert (am.status.written, am.status.rejected, am.status.extra["alerts"]) == (1, 2, 1)


async def test_remembered_alerts_are_capped_least_recently_updated_first() -> None:
    post, clock = ScriptedPost(), Clock(T0)
    am = sink(post, clock, max_alerts=2)
    a, b, c = (alert(refDevice=name) for name in ("a", "b", "c"))
    await am.write([record(a, 0), record(b, 1)])
    await am.flush()
    await am.write([record(alert(refDevice="a", starts_at_ms=T0 + MIN), 2)])  # a updated
    await am.write([record(c, 3)])
    await am.flush()
    # Every state was sent once; then b, the least recently updated, is forgotten.
    assert sum(len(body) for _, body, _ in post.calls) == 4
    assert (am.status.extra["alerts"], am.status.evicted) == (2, 1)
    await am.tick(T0 + 2 * MIN)
    resent = {item["labels"]["refDevice"] for item in post.calls[-1][1]}
    assert resent == {"a", "c"}  # b is no longer kept alive in Alertmanager


async def test_restore_is_capped_too() -> None:
    am = sink(ScriptedPost(), Clock(T0 + MIN), max_alerts=3)
    pairs = [(record(alert(refDevice=str(n)), n), T0) for n in range(5)]
    assert am.restore(pairs) == 5
    assert (am.status.extra["alerts"], am.status.evicted) == (3, 2)


def test_max_alerts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AlertmanagerConfig(url="http://am", max_alerts=0)


async def test_urls_are_redacted_in_status_logs_and_rejections(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "https://user:SECRETPASS@am.example/proxy/SECRETPATH"
    post = ScriptedPost(
        Answer(503, f"upstream {url}/api/v2/alerts down"),
        Answer(400, "bad: /proxy/SECRETPATH/api/v2/alerts"),
    )
    config = AlertmanagerConfig(url=url)
    am = AlertmanagerSink(config, post=post, clock=Clock(), random=lambda: 0.0, sleep=_no_sleep)
    await am.write([record(alert())])
    [rejection] = await am.flush()
    shown = "https://***@am.example/proxy/***/api/v2/alerts"
    assert rejection.reason == f"alertmanager {shown}: HTTP 400: bad: /proxy/***/api/v2/alerts"
    assert am.status.extra["url"] == "https://***@am.example/proxy/***"
    # A URL inside a text follows the one rule: every segment after the first hidden.
    echoed = "https://***@am.example/proxy/***/***/***/***"
    assert am.status.last_error == f"{shown}: HTTP 503: upstream {echoed} down"
    for text in (str(am.status), caplog.text, rejection.reason):
        assert "SECRET" not in text
