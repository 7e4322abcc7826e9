from __future__ import annotations

import hashlib
import hmac

import pytest

from sinks.http import Answer
from sinks.webhook import WebhookSink, WebhookTarget, sign, verify
from tests.unit.sinks.helpers import ScriptedPost, alert, record, refused

NOW_S = 1_795_662_300


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"state":"firing"}'
    expected = hmac.new(b"k", b"1795662300." + body, hashlib.sha256).hexdigest()
    assert sign("k", NOW_S, body) == f"sha256={expected}"


def test_verify() -> None:
    body = b"{}"
    good = sign("k", NOW_S, body)
    assert verify("k", body, str(NOW_S), good, now_s=NOW_S + 299)
    assert not verify("k", body, str(NOW_S), good, now_s=NOW_S + 301)  # too old
    assert not verify("other", body, str(NOW_S), good, now_s=NOW_S)
    assert not verify("k", b"{ }", str(NOW_S), good, now_s=NOW_S)  # body changed
    assert not verify("k", body, str(NOW_S + 1), good, now_s=NOW_S)  # timestamp changed
    assert not verify("k", body, None, good, now_s=NOW_S)
    assert not verify("k", body, "-1", good, now_s=NOW_S)


def test_targets_need_a_secret_that_is_not_shown() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookTarget("http://bot", secret="").check()
    assert "s3cret" not in repr(WebhookTarget("http://bot", secret="s3cret"))


def make(post: ScriptedPost, *urls: str) -> WebhookSink:
    async def no_sleep(seconds: float) -> None:
        pass

    targets = [WebhookTarget(url, secret=f"key-{url}") for url in urls or ("http://bot",)]
    return WebhookSink(targets, post=post, clock=lambda: NOW_S, sleep=no_sleep, random=lambda: 0.0)


async def test_one_signed_post_per_change_with_the_record_as_body() -> None:
    post = ScriptedPost()
    sink = make(post, "http://a", "http://b")
    firing, resolved = alert(), alert("resolved", ends_at_ms=alert().starts_at_ms + 60_000)
    await sink.write([record(firing, 0), record(resolved, 1)])
    assert await sink.flush() == []
    assert [url for url, _, _ in post.calls].count("http://a") == 2
    by_url = [(url, body) for (url, _, _), body in zip(post.calls, post.bodies, strict=True)]
    assert [body for url, body in by_url if url == "http://a"] == [
        firing.to_json(),
        resolved.to_json(),
    ]
    for (url, _, headers), body in zip(post.calls, post.bodies, strict=True):
        assert verify(
            f"key-{url}", body, headers["X-IOC-Timestamp"], headers["X-IOC-Signature"], now_s=NOW_S
        )
        assert headers["X-IOC-Event-Id"].startswith(firing.fingerprint)
    assert (sink.status.written, sink.status.state) == (2, "up")


async def test_retries_then_success() -> None:
    post = ScriptedPost(Answer(503), refused(), Answer(200))
    sink = make(post)
    await sink.write([record(alert())])
    assert await sink.flush() == []
    assert (sink.status.retries, len(post.calls)) == (2, 3)


async def test_a_refusal_by_any_receiver_rejects_the_record_with_its_answer() -> None:
    post = ScriptedPost(Answer(400, "unknown channel"))
    sink = make(post, "http://a")
    await sink.write([record(alert(), 7), record(b"[]", 8)])
    rejected = await sink.flush()
    assert [r.record.offset for r in rejected] == [8, 7]
    assert rejected[1].reason == "webhook http://a: HTTP 400: unknown channel"
    assert (sink.status.written, sink.status.rejected) == (0, 2)


async def test_a_token_in_the_url_is_redacted_in_status_reasons_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "https://hooks.example/services/T000/B000/XXXXSECRET?token=abcdef123"
    post = ScriptedPost(Answer(503, "busy"), Answer(404, "no hook XXXXSECRET"))
    sink = make(post, url)
    await sink.write([record(alert(), 7)])
    [rejection] = await sink.flush()
    shown = "https://hooks.example/services/***/***/***?token=***"
    assert sink.status.extra["urls"] == [shown]
    assert rejection.reason == f"webhook {shown}: HTTP 404: no hook ***"
    assert sink.status.last_error == f"{shown}: HTTP 503: busy"
    for text in (str(sink.status), caplog.text, rejection.reason):
        assert "XXXXSECRET" not in text and "abcdef123" not in text
