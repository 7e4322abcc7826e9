from __future__ import annotations

import asyncio

import pytest

from models.errors import TransientError
from sinks.base import SinkStatus
from sinks.http import Answer, Backoff, deliver
from tests.unit.sinks.helpers import ScriptedPost, refused


def test_backoff_grows_to_its_ceiling_with_full_jitter() -> None:
    backoff = Backoff(base_s=0.5, max_s=8.0)
    assert [backoff.ceiling(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff.ceiling(10_000) == 8.0
    assert backoff.delay(3, lambda: 0.0) == 0.0
    assert backoff.delay(3, lambda: 0.999) == pytest.approx(4.0 * 0.999)


@pytest.mark.parametrize(
    ("code", "transient"),
    [(200, False), (400, False), (404, False), (408, True), (429, True), (500, True), (503, True)],
)
def test_answer_kinds(code: int, transient: bool) -> None:
    assert Answer(code).transient is transient


async def test_deliver_retries_transient_failures_until_answered() -> None:
    post = ScriptedPost(refused(), Answer(503, "busy"), Answer(429), Answer(200))
    status = SinkStatus()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    answer = await deliver(
        post,
        "http://u:p@am:9093/x",
        b"[]",
        dict,
        status=status,
        backoff=Backoff(1.0, 3.0),
        sleep=sleep,
        random=lambda: 1.0,
    )
    assert answer == Answer(200)
    assert sleeps == [1.0, 2.0, 3.0]  # ceilings, with the jitter draw pinned at 1
    assert status.retries == 3 and status.state == "retrying"
    assert status.last_error == "http://***@am:9093/x: HTTP 429"  # no credentials


async def test_deliver_returns_a_permanent_refusal_at_once() -> None:
    post = ScriptedPost(Answer(400, "bad label"))
    status = SinkStatus()
    answer = await deliver(
        post, "http://am/x", b"[]", dict, status=status, backoff=Backoff(), random=lambda: 0.0
    )
    assert answer.describe() == "HTTP 400: bad label" and status.retries == 0


SECRET_URL = "https://hooks.example/services/T000/B000/XXXXSECRET?token=abcdef123"


async def test_deliver_redacts_the_url_in_status_logs_and_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A server and aiohttp both echo the URL: the secrets are hidden in all of it.
    post = ScriptedPost(
        TransientError(f"InvalidURL: {SECRET_URL}"),
        Answer(404, "no route /services/T000/B000/XXXXSECRET"),
    )
    status = SinkStatus()
    answer = await deliver(
        post, SECRET_URL, b"[]", dict, status=status, backoff=Backoff(), random=lambda: 0.0
    )
    # T000 and B000 are shorter than a token (MIN_SECRET_CHARS): left in the text.
    assert answer == Answer(404, "no route /services/T000/B000/***")
    shown = "https://hooks.example/services/***/***/***?token=***"
    assert status.last_error == f"{shown}: InvalidURL: {shown}"
    assert "XXXXSECRET" not in caplog.text and "abcdef123" not in caplog.text
    assert shown in caplog.text


async def test_deliver_shows_the_url_as_the_sink_says() -> None:
    post = ScriptedPost(Answer(503))
    status = SinkStatus()
    await deliver(
        post, "http://vm/write?db=x", b"[]", dict, status=status, backoff=Backoff(),
        random=lambda: 0.0, sleep=lambda _: asyncio.sleep(0), shown="http://vm/write?db=x",
    )  # fmt: skip
    assert status.last_error == "http://vm/write?db=x: HTTP 503"
