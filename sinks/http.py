"""HTTP delivery shared by the alert sinks: one POST, and retrying it until answered.

    TransientError          connection refused or reset, timeout: worth retrying
    Answer.transient        a 408, 429 or 5xx answer: worth retrying
    anything else 4xx       permanent: the sink turns it into a Rejection

`deliver` retries transient failures for as long as it takes, with exponential
backoff and full jitter (sleep a uniform random time in [0, min(max_s, base_s·2ⁿ)]),
so many workers do not hammer a server that comes back at the same instant. It never
gives up: the sink's status says `retrying` with the last error meanwhile, and only
cancellation (the worker stopping) ends the wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from models.errors import TransientError
from sinks.base import SinkStatus
from sinks.redaction import redact_text, redact_url

__all__ = [
    "AiohttpPost",
    "Answer",
    "Backoff",
    "Post",
    "deliver",
]

log = logging.getLogger(__name__)

#: How much of a server's answer goes into status, logs and dead letters.
MAX_ANSWER_CHARS = 1000


@dataclass(frozen=True, slots=True)
class Answer:
    """A server's answer: status and body text (cut to MAX_ANSWER_CHARS)."""

    status: int
    body: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        """408, 429 and 5xx may succeed later; any other 4xx will not."""
        return self.status in (408, 429) or self.status >= 500

    def describe(self) -> str:
        return f"HTTP {self.status}: {self.body}" if self.body else f"HTTP {self.status}"

    def redacted(self, url: str) -> Answer:
        """The answer with `url`'s secrets hidden in its body: a server may echo the
        request's URL or path (sinks/redaction.py)."""
        body = redact_text(self.body, url)
        return self if body == self.body else Answer(self.status, body)


class Post(Protocol):
    """POST `body` to `url`; return the answer or raise TransientError."""

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> Awaitable[Answer]: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter (AWS Architecture Blog, "Exponential
    Backoff And Jitter"): attempt n sleeps uniform(0, min(max_s, base_s·2ⁿ))."""

    base_s: float = 0.5
    max_s: float = 30.0

    def ceiling(self, attempt: int) -> float:
        # min() before the power would overflow a float after ~1000 attempts.
        return self.max_s if attempt >= 64 else min(self.max_s, self.base_s * 2**attempt)

    def delay(self, attempt: int, random: Callable[[], float]) -> float:
        return random() * self.ceiling(attempt)


class AiohttpPost:
    """The real `Post`: one aiohttp session, opened and closed by the sink."""

    def __init__(self, timeout_s: float, auth: aiohttp.BasicAuth | None = None) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._auth = auth
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, auth=self._auth, headers={"User-Agent": "ioc-streams"}
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        if self._session is None:
            raise RuntimeError("AiohttpPost used before open()")
        try:
            async with self._session.post(url, data=body, headers=dict(headers)) as response:
                text = await response.text(errors="replace")
                return Answer(response.status, text.strip()[:MAX_ANSWER_CHARS])
        except (aiohttp.ClientError, TimeoutError) as exc:
            # aiohttp's messages name the URL (InvalidURL, ClientResponseError).
            message = redact_text(f"{type(exc).__name__}: {exc}".rstrip(": "), url)
            # Not chained: a logged traceback would print the cause, URL and all.
            raise TransientError(message) from None


async def deliver(
    post: Post,
    url: str,
    body: bytes,
    headers: Callable[[], Mapping[str, str]],
    *,
    status: SinkStatus,
    backoff: Backoff,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    random: Callable[[], float],
    shown: str | None = None,
    configured: str | None = None,
) -> Answer:
    """POST until the server answers 2xx or a permanent 4xx, and return that answer.

    `headers` is called before every attempt, so a signature with a timestamp is
    fresh on each retry. Each transient failure counts in `status.retries` and sets
    `status.state = "retrying"` with `last_error`; the caller sets `up` afterwards.
    What it returns, logs and records has the secrets of `configured` (the URL as
    configured, of which `url` is the sink's endpoint; default `url`) redacted, the
    answer's body too; `shown` is how `url` appears in logs and status (default
    `redact_url(url)`).
    """
    attempt = 0
    shown = shown or redact_url(url)
    configured = configured or url
    while True:
        try:
            answer = (await post(url, body, headers())).redacted(configured)
        except TransientError as exc:
            error = redact_text(str(exc), configured)
        else:
            if not answer.transient:
                return answer
            error = answer.describe()
        delay = backoff.delay(attempt, random)
        attempt += 1
        status.state = "retrying"
        status.last_error = f"{shown}: {error}"
        status.retries += 1
        log.warning("POST %s failed (%s); retry %d in %.1f s", shown, error, attempt, delay)
        await sleep(delay)
