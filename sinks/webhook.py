"""Webhook sink: each alert state change of `ioc.alerts`, signed, to configured URLs.

One POST per state change and URL, in offset order per URL (the URLs are served
concurrently). The body is the `ioc.alerts` record exactly as `Alert.to_json` writes
it (docs/RULES.md); chat bots and ticketing systems take one alert per request
more easily than a batch, and alert changes are few. Headers:

    Content-Type: application/json
    X-IOC-Event-Id: <identity>            the same on a replay: deduplicate on it
    X-IOC-Timestamp: <unix seconds>       when this attempt was signed
    X-IOC-Signature: sha256=<hex>         HMAC-SHA256(secret, f"{timestamp}.".encode() + body)

A receiver recomputes the HMAC over the raw body (`verify`), compares in constant
time and refuses a timestamp more than five minutes from its clock (a replayed
capture). Each retry is signed afresh, so a long outage does not make it stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random as _random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from pydantic import Field, SecretStr

from models.alerts import Alert
from sinks.base import Rejection, SinkConfig, SinkRecord, SinkStatus
from sinks.http import AiohttpPost, Backoff, Post, deliver
from sinks.redaction import redact_url

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookConfig",
    "WebhookSink",
    "WebhookTarget",
    "sign",
    "verify",
]

log = logging.getLogger(__name__)

TOPIC: Final = "ioc.alerts"
SIGNATURE_HEADER: Final = "X-IOC-Signature"
TIMESTAMP_HEADER: Final = "X-IOC-Timestamp"
EVENT_ID_HEADER: Final = "X-IOC-Event-Id"
#: How far a receiver should accept a timestamp from its own clock.
DEFAULT_TOLERANCE_S: Final = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with `secret` over `f"{timestamp}.".encode() + body`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now_s: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """What a receiver does with the raw body and the two headers: True only for a
    valid signature with a timestamp within `tolerance_s` of now."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    now = time.time() if now_s is None else now_s
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


class WebhookConfig(SinkConfig):
    """The receivers and their shared key: settings `IOC_SINKS__WEBHOOK__…`."""

    urls: list[str] = Field(description="Receivers, as a JSON list of http(s) URLs.")
    secret: SecretStr = Field(description="HMAC-SHA256 signing key shared with the receivers.")

    def build(self) -> WebhookSink:
        secret = self.secret.get_secret_value()
        return WebhookSink([WebhookTarget(url=url, secret=secret) for url in self.urls])


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """One receiver."""

    #: Where to POST, e.g. `https://chat.example/hooks/ioc`.
    url: str
    #: The shared HMAC key; the receiver holds the same. Never logged.
    secret: str = field(repr=False)
    #: Seconds one POST may take before it counts as a transient failure.
    timeout_s: float = 10.0

    def check(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook: url must be http(s), got {redact_url(self.url)!r}")
        if not self.secret:
            raise ValueError(f"webhook {redact_url(self.url)}: a signing secret is required")


@dataclass(slots=True)
class _Change:
    record: SinkRecord
    alert: Alert
    body: bytes


class WebhookSink:
    """POSTs every alert state change to each of several receivers, signed."""

    topic = TOPIC

    def __init__(
        self,
        targets: Sequence[WebhookTarget],
        *,
        name: str = "webhook",
        backoff: Backoff | None = None,
        post: Post | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        """`post`, `clock` (wall seconds), `sleep` and `random` are for tests."""
        if not targets:
            raise ValueError("webhook: at least one target URL is needed")
        for target in targets:
            target.check()
        self.name = name
        self.targets = tuple(targets)
        self.backoff = backoff or Backoff()
        self.status = SinkStatus(extra={"urls": [redact_url(t.url) for t in self.targets]})
        self._own_post = post is None
        self._posts: list[Post] = (
            [AiohttpPost(t.timeout_s) for t in self.targets]
            if post is None
            else [post] * len(self.targets)
        )
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._changes: list[_Change] = []
        self._rejected: list[Rejection] = []

    async def open(self) -> None:
        if self._own_post:
            for post in self._posts:
                if isinstance(post, AiohttpPost):
                    await post.open()
        self.status.state = "up"

    async def write(self, records: list[SinkRecord]) -> None:
        for record in records:
            try:
                alert = Alert.from_json(record.value)
            except ValueError as exc:
                self._rejected.append(Rejection(record, f"not an ioc.alerts record: {exc}"))
                continue
            self._changes.append(_Change(record, alert, alert.to_json()))
        self.status.queued = len(self._changes)

    async def flush(self) -> list[Rejection]:
        rejected, self._rejected = self._rejected, []
        changes, reasons = self._changes, dict[int, list[str]]()
        if changes:
            async with asyncio.TaskGroup() as group:
                for target, post in zip(self.targets, self._posts, strict=True):
                    group.create_task(self._send_all(target, post, changes, reasons))
        for index, change in enumerate(changes):
            if index in reasons:
                rejected.append(Rejection(change.record, "; ".join(reasons[index])))
        self.status.written += len(changes) - len(reasons)
        self.status.rejected += len(rejected)
        self._changes = []
        self.status.queued = 0
        self.status.state = "up"
        return rejected

    async def tick(self, now_ms: int) -> None:
        """Nothing is time-driven: every change is sent by `flush`."""

    async def close(self) -> None:
        if self._own_post:
            for post in self._posts:
                if isinstance(post, AiohttpPost):
                    await post.close()
        self.status.state = "stopped"

    async def _send_all(
        self,
        target: WebhookTarget,
        post: Post,
        changes: list[_Change],
        reasons: dict[int, list[str]],
    ) -> None:
        for index, change in enumerate(changes):

            def headers(change: _Change = change) -> dict[str, str]:
                timestamp = int(self._clock())
                return {
                    "Content-Type": "application/json",
                    EVENT_ID_HEADER: change.alert.identity,
                    TIMESTAMP_HEADER: str(timestamp),
                    SIGNATURE_HEADER: sign(target.secret, timestamp, change.body),
                }

            answer = await deliver(
                post,
                target.url,
                change.body,
                headers,
                status=self.status,
                backoff=self.backoff,
                sleep=self._sleep,
                random=self._random,
            )
            if not answer.ok:
                reason = f"webhook {redact_url(target.url)}: {answer.describe()}"
                log.error("alert %s rejected: %s", change.alert.identity, reason)
                reasons.setdefault(index, []).append(reason)
