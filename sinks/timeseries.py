"""Window results into a time-series store, as InfluxDB line protocol over HTTP.

    LineProtocolSink(TimeseriesConfig(kind="victoriametrics", url="http://vm:8428"))

Targets (`TimeseriesConfig.kind`):

    victoriametrics   POST {url}/write?precision=ms
    influxdb1         POST {url}/write?db=DATABASE&precision=ms     (basic auth optional)
    influxdb2         POST {url}/api/v2/write?org=ORG&bucket=BUCKET&precision=ms
                      Authorization: Token TOKEN

The point layout (one measurement `ioc_aggregate`, statistics as fields, bounded group
labels as tags) is sinks/lineprotocol.py's. A point is identified by its tags and the
window start, so writing a window result again writes the same point:

- **InfluxDB** overwrites it (same series and time: the newer fields win).
- **VictoriaMetrics** keeps every sample it is sent, duplicates included, unless it
  runs with `-dedup.minScrapeInterval=1ms`; then it keeps one per series and
  millisecond. Run it so. Which one it keeps is not "the last written" in every
  version (newer ones keep the largest value), so a running update could outlive its
  final: **running updates (`final: false`) are written only with
  `running_updates=True`**, meant for InfluxDB. Wall displays read the open window's
  figures from Kafka, not from the store.

Batching: `write` encodes and buffers; a batch of `batch_lines` lines is sent at once,
the rest when `tick` finds the oldest buffered line `batch_interval_s` old, or at
`flush`. Batches go out one at a time, in offset order, so a later write of a point
is never overtaken by an earlier one.

Answers:

- 2xx: the batch is acknowledged (`status.written`, state `up`).
- Connection errors, timeouts, 408, 429, 5xx: retried for as long as it takes, with
  exponential backoff and full jitter (0.2 s doubling to 30 s; sinks/http.py);
  `status.state = "retrying"` with `last_error` and `retries` meanwhile.
- 400, 413, 422: something in the batch is refused. The batch is split in halves and
  each half sent again until the refused lines stand alone; each becomes a `Rejection`
  with the server's answer (for the dead letter) and the rest is written. InfluxDB
  writes the good points of a partial write already; sending them again overwrites.
  VictoriaMetrics 1.79 answers 204 and skips (and logs) lines it cannot parse.
- Any other 4xx (401, 403, 404: a wrong token, database or bucket) is the
  configuration's fault, not the records': it is retried like a transient error, so
  that fixing the configuration loses nothing, and the status shows the answer.

Secrets (token, password) go in headers only, never in a URL, log or status.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlencode, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from models.errors import EncodeError
from sinks.base import Rejection, SinkConfig, SinkRecord, SinkStatus
from sinks.http import AiohttpPost, Backoff, Post, deliver
from sinks.lineprotocol import BOUNDED_LABELS, encode, is_unbounded, unbounded_labels
from sinks.redaction import redact_url

__all__ = ["LineProtocolSink", "TimeseriesConfig"]

log = logging.getLogger(__name__)

#: How many aggregates not exported are remembered to log once each; past it, more
#: are skipped without a log line (`skipped` still counts them).
MAX_LOGGED = 1000
#: Statuses that mean "a line of this batch is bad": split the batch to find it.
_REFUSED = frozenset({400, 413, 422})


class TimeseriesConfig(SinkConfig):
    """Where and how a `LineProtocolSink` writes: settings `IOC_SINKS__TIMESERIES__…`."""

    name: str = Field(
        "timeseries",
        pattern=r"^[a-z][a-z0-9_]*$",
        description="The sink's name: metric label, consumer group suffix.",
    )
    kind: Literal["victoriametrics", "influxdb1", "influxdb2"] = Field(
        "victoriametrics", description="The server's write API."
    )
    url: str = Field(
        "http://127.0.0.1:8428",
        description="Base URL, without a path for the write endpoint and without user:pass@.",
    )
    database: str | None = Field(None, description="influxdb1: the `db` to write to.")
    org: str | None = Field(None, description="influxdb2: the organisation.")
    bucket: str | None = Field(None, description="influxdb2: the bucket.")
    token: SecretStr | None = Field(None, description="influxdb2: the API token (required).")
    username: str | None = Field(
        None, description="influxdb1 or victoriametrics: basic auth user, with `password`."
    )
    password: SecretStr | None = None
    batch_lines: int = Field(5000, ge=1, description="Send as soon as this many lines wait.")
    batch_interval_s: float = Field(
        1.0, gt=0, description="Send what waits once its oldest line is this old (at `tick`)."
    )
    timeout_s: float = Field(10.0, gt=0, description="One request, connect to last byte.")
    backoff_base_s: float = Field(0.2, gt=0, description="First retry waits up to this.")
    backoff_max_s: float = Field(30.0, gt=0, description="No retry waits longer than this.")
    running_updates: bool = Field(
        False, description="Also write running updates (`final: false`): InfluxDB only."
    )
    labels: frozenset[str] = Field(
        frozenset(),
        description="Group labels to write as tags besides the built-in bounded ones.",
    )

    @field_validator("url")
    @classmethod
    def _plain_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        if parts.username or parts.password:
            raise ValueError("put credentials in username/password or token, not the URL")
        return url.rstrip("/")

    @field_validator("labels")
    @classmethod
    def _bounded(cls, labels: frozenset[str]) -> frozenset[str]:
        if bad := sorted(label for label in labels if is_unbounded(label)):
            raise ValueError(f"unbounded labels cannot be tags: {', '.join(bad)}")
        if "aggregate" in labels:
            raise ValueError("`aggregate` is the sink's own tag")
        return labels

    @model_validator(mode="after")
    def _complete(self) -> TimeseriesConfig:
        if self.kind == "influxdb1" and not self.database:
            raise ValueError("influxdb1 needs `database`")
        if self.kind == "influxdb2" and not (self.org and self.bucket and self.token):
            raise ValueError("influxdb2 needs `org`, `bucket` and `token`")
        if (self.username is None) != (self.password is None):
            raise ValueError("`username` and `password` go together")
        if self.running_updates and self.kind == "victoriametrics":
            raise ValueError(
                "running updates would not be overwritten by their finals in VictoriaMetrics"
            )
        return self

    def build(self) -> LineProtocolSink:
        return LineProtocolSink(self)

    def write_url(self) -> str:
        """The write endpoint with its query (no secrets in it)."""
        query: dict[str, str] = {}
        if self.kind == "victoriametrics":
            path = "/write"
        elif self.kind == "influxdb1":
            path = "/write"
            query["db"] = self.database or ""
        else:
            path = "/api/v2/write"
            query.update(org=self.org or "", bucket=self.bucket or "")
        query["precision"] = "ms"
        return f"{self.url}{path}?{urlencode(query)}"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.kind == "influxdb2" and self.token is not None:
            headers["Authorization"] = f"Token {self.token.get_secret_value()}"
        elif self.username is not None and self.password is not None:
            user_pass = f"{self.username}:{self.password.get_secret_value()}"
            headers["Authorization"] = f"Basic {base64.b64encode(user_pass.encode()).decode()}"
        return headers


class LineProtocolSink:
    """The `Sink` for `ioc.aggregates` into VictoriaMetrics or InfluxDB 1.x/2.x."""

    topic = "ioc.aggregates"

    def __init__(
        self,
        target: TimeseriesConfig,
        *,
        post: Post | None = None,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
    ) -> None:
        self.target = target
        self.name = target.name
        self.status = SinkStatus(extra={"kind": target.kind, "url": redact_url(target.url)})
        self.status.extra.update(skipped=0, batches=0)
        self._url = target.write_url()
        # The endpoint and query are the sink's own (no secrets): only the configured
        # base is redacted.
        self._shown_url = redact_url(target.url).rstrip("/") + self._url[len(target.url) :]
        self._allowed = BOUNDED_LABELS | target.labels
        self._string_fields = target.kind != "victoriametrics"  # VM stores strings as 0
        self._backoff = Backoff(base_s=target.backoff_base_s, max_s=target.backoff_max_s)
        self._random = random
        self._clock = clock
        self._own_post = post is None
        self._post: Post = post or AiohttpPost(target.timeout_s)
        self._buffer: list[tuple[SinkRecord, bytes]] = []
        self._buffered_since = 0.0
        self._sending: asyncio.Task[None] | None = None
        self._rejections: list[Rejection] = []
        self._excluded: set[str] = set()  # aggregates already logged as not exported

    async def open(self) -> None:
        if isinstance(self._post, AiohttpPost):
            await self._post.open()
        self.status.state = "up"

    async def write(self, records: list[SinkRecord]) -> None:
        for record in records:
            if not self.target.running_updates and record.decoded.get("final") is not True:
                continue
            try:
                line = encode(
                    record.decoded, allowed=self._allowed, string_fields=self._string_fields
                )
            except EncodeError as exc:
                self._reject([record], f"not written: {exc}")
                continue
            if line is None:
                self._skip(record)
                continue
            if not self._buffer:
                self._buffered_since = self._clock()
            self._buffer.append((record, line))
            self.status.queued += 1
            if len(self._buffer) >= self.target.batch_lines:
                self._send_buffer()

    async def flush(self) -> list[Rejection]:
        self._send_buffer()
        if self._sending is not None:
            await asyncio.shield(self._sending)
        rejections, self._rejections = self._rejections, []
        return rejections

    async def tick(self, now_ms: int) -> None:
        if self._buffer and self._clock() - self._buffered_since >= self.target.batch_interval_s:
            self._send_buffer()

    async def close(self) -> None:
        if self._sending is not None and not self._sending.done():
            self._sending.cancel()
            await asyncio.gather(self._sending, return_exceptions=True)
        self._sending = None
        if self._own_post and isinstance(self._post, AiohttpPost):
            await self._post.close()
        self.status.state = "stopped"

    # -- sending ----------------------------------------------------------------------

    def _send_buffer(self) -> None:
        """Start sending the buffer after the batches already on their way."""
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        self._sending = asyncio.create_task(self._after(self._sending, batch))

    async def _after(
        self, previous: asyncio.Task[None] | None, batch: list[tuple[SinkRecord, bytes]]
    ) -> None:
        if previous is not None:
            await previous
        await self._send(batch)

    async def _send(self, batch: list[tuple[SinkRecord, bytes]]) -> None:
        body = b"\n".join(line for _, line in batch) + b"\n"
        attempt = 0
        while True:
            answer = await deliver(
                self._post,
                self._url,
                body,
                self.target.headers,
                status=self.status,
                backoff=self._backoff,
                random=self._random,
                shown=self._shown_url,
                configured=self.target.url,
            )
            if answer.ok or answer.status in _REFUSED:
                break
            # 401/403/404…: the configuration is wrong, not the records; keep them.
            delay = self._backoff.delay(attempt, self._random)
            attempt += 1
            self.status.state = "retrying"
            self.status.last_error = f"{self._shown_url}: {answer.describe()}"
            self.status.retries += 1
            log.error(
                "%s: %s refused the write (%s), check the sink's configuration; retry in %.1f s",
                self.name,
                self._shown_url,
                answer.describe(),
                delay,
            )
            await asyncio.sleep(delay)
        if answer.ok:
            self._acknowledged(len(batch))
        elif len(batch) == 1:
            self._acknowledged(1, rejected=True)
            self._reject([batch[0][0]], answer.describe())
        else:
            middle = len(batch) // 2
            await self._send(batch[:middle])
            await self._send(batch[middle:])

    def _acknowledged(self, lines: int, *, rejected: bool = False) -> None:
        self.status.queued -= lines
        if not rejected:
            self.status.written += lines
        self.status.extra["batches"] += 1
        self.status.state = "up"

    def _reject(self, records: list[SinkRecord], reason: str) -> None:
        self.status.rejected += len(records)
        self._rejections.extend(Rejection(record, reason) for record in records)

    def _skip(self, record: SinkRecord) -> None:
        """Not written: unbounded group labels (logged once per aggregate), or nothing
        to write (every statistic null)."""
        self.status.extra["skipped"] += 1
        aggregate = str(record.decoded.get("aggregate"))
        labels = unbounded_labels(record.decoded.get("group", {}), self._allowed)
        # Bounded: names come from records, and a foreign producer could vary them.
        if labels and aggregate not in self._excluded and len(self._excluded) < MAX_LOGGED:
            self._excluded.add(aggregate)
            log.warning(
                "%s: aggregate %s is not written: its group labels %s are not bounded "
                "(add bounded ones to the sink's `labels`)",
                self.name,
                aggregate,
                ", ".join(labels),
            )
