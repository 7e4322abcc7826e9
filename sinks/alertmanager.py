"""Alertmanager sink: alert state changes of `ioc.alerts` → `POST /api/v2/alerts`.

Alertmanager keeps no durable state and resolves an alert whose `endsAt` has passed,
so a client keeps re-sending (Alertmanager's docs/clients.md). This sink keeps the latest state per
fingerprint in memory:

- a firing alert is re-sent every `resend_s` (60 s) with `endsAt = now + 3·resend_s`:
  Alertmanager keeps it active while we run, and resolves it on its own about three
  minutes after we die (Prometheus does the same with 4× its resend delay);
- a resolved alert is sent with its `ends_at`, then re-sent every `resend_s` for
  `resolved_resend_s` (5 min) after we took it, in case Alertmanager restarted and
  only learns of the alert from a late firing copy elsewhere; then it is no longer
  sent but remembered for `remember_s`, so that a replayed older record cannot
  bring it back.

After a restart the states taken before the committed offset are gone from memory, and
a firing alert is written to `ioc.alerts` once: without them Alertmanager would expire
alerts that still fire. So the sink stage first reads the topic back over
`restore_lookback_s` up to its group's committed offsets and hands the records to
`restore` (streams/worker/stages/sinks.py does the reading): the latest state per
fingerprint is rebuilt with the time each record was produced as the time it was
taken, and the next `tick` re-sends the firing ones (and the resolved ones still
within `resolved_resend_s`).

Memory is bounded: resolved states are forgotten `resolved_resend_s + remember_s`
after they were taken, and at most `max_alerts` states are held; past it the least
recently updated are forgotten (`status.evicted`, `ioc_sink_alerts_evicted_total`).
A forgotten firing alert is no longer re-sent, so Alertmanager lets it expire.

Which state wins: states of one fingerprint are ordered by (`starts_at_ms`, firing <
resolved); a record lower than the one held is ignored (an out-of-order older
record never resurrects a resolved alert); an equal or higher one supersedes.

Labels: Alertmanager (≤ 0.27) accepts only Prometheus label names `[a-zA-Z_][a-zA-Z0-9_]*`,
and our group labels are field paths, so `label_name` maps them (docs/SINKS.md).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import random as _random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote

import orjson
from pydantic import Field, SecretStr

from models.alerts import Alert
from models.errors import TransientError
from models.timefmt import rfc3339
from sinks.base import Rejection, SinkConfig, SinkRecord, SinkStatus
from sinks.http import AiohttpPost, Answer, Backoff, Post, deliver
from sinks.redaction import redact_text, redact_url

__all__ = [
    "AlertmanagerConfig",
    "AlertmanagerSink",
    "annotation_set",
    "label_name",
    "label_set",
    "postable_alert",
]

log = logging.getLogger(__name__)

TOPIC: Final = "ioc.alerts"
#: How many times `resend_s` a firing alert stays valid in Alertmanager without news.
VALIDITY_RESENDS: Final = 3
#: Evictions are logged at most this often.
EVICTION_LOG_EVERY_MS: Final = 60_000


class AlertmanagerConfig(SinkConfig):
    """Where and how to send alerts to Alertmanager: settings `IOC_SINKS__ALERTMANAGER__…`."""

    url: str = Field(
        description="Alertmanager's base URL, e.g. http://127.0.0.1:9093; the sink posts "
        "to <url>/api/v2/alerts (a path prefix such as /am is kept)."
    )
    username: str | None = Field(None, description="Basic auth user, with `password`.")
    password: SecretStr | None = None
    bearer_token: SecretStr | None = Field(None, description="Instead of basic auth.")
    # Keep it well below Alertmanager's `resolve_timeout` (5 min).
    resend_s: float = Field(
        60.0, gt=0, description="Firing alerts are re-sent this often (valid for 3×)."
    )
    resolved_resend_s: float = Field(
        300.0, gt=0, description="Resolved alerts are re-sent for this long."
    )
    # e.g. `https://ioc.example/alerts/{fingerprint}`, substituted URL-quoted.
    generator_url: str | None = Field(
        None, description="Link per alert; `{fingerprint}` and `{alertname}` substituted."
    )
    # A firing alert is written to ioc.alerts once, so this bounds how long an alert can
    # have been firing and still be re-sent after a restart. The sink reads at least
    # `resolved_resend_s + remember_s` (how long a resolved state matters).
    restore_lookback_s: float = Field(
        86_400.0, gt=0,
        description="On start, alert states are rebuilt from this much of ioc.alerts.",
    )  # fmt: skip
    # Each remembered alert is its record and payload, ~2-4 KB: 50,000 are ~150 MB.
    max_alerts: int = Field(
        50_000, ge=1,
        description="At most this many alert states are remembered (firing or resolved); "
        "past it the least recently updated are forgotten, counted as evicted.",
    )  # fmt: skip

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + "/api/v2/alerts"

    @property
    def shown_endpoint(self) -> str:
        """`endpoint` as logs and status show it: the configured part redacted."""
        return redact_url(self.url).rstrip("/") + "/api/v2/alerts"

    @property
    def auth(self) -> Literal["none", "basic", "bearer"]:
        if self.bearer_token:
            return "bearer"
        return "basic" if self.username is not None else "none"

    def check(self) -> None:
        """ValueError on a configuration that cannot work. An empty secret counts as
        unset."""
        if self.bearer_token and (self.username is not None or self.password):
            raise ValueError("alertmanager: basic auth and bearer token are exclusive")
        if (self.username is None) != (not self.password):
            raise ValueError("alertmanager: basic auth needs both username and password")
        if not 0 < self.resend_s <= self.resolved_resend_s:
            raise ValueError("alertmanager: need 0 < resend_s <= resolved_resend_s")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"alertmanager: url must be http(s), got {redact_url(self.url)!r}")

    def build(self) -> AlertmanagerSink:
        return AlertmanagerSink(self)


# -- mapping -------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[.\-/: ]")
_INVALID = re.compile(r"[^A-Za-z0-9_]")


def label_name(name: str) -> str:
    """A field path as a Prometheus label name: separators (`.` `-` `/` `:` space)
    become `_`, other invalid characters (`@`, non-ASCII) are dropped, a leading digit
    gets a `_` prefix and a leading `__` (reserved) becomes `_`.

    `source.ip` → `source_ip`, `file.hash.sha256` → `file_hash_sha256`,
    `@timestamp` → `timestamp`, `refDevice` → `refDevice`.
    """
    mapped = _INVALID.sub("", _SEPARATORS.sub("_", name))
    if not mapped or mapped[0].isdigit():
        mapped = "_" + mapped
    return re.sub(r"^__+", "_", mapped)


def _mapped(values: Mapping[str, str]) -> dict[str, str]:
    # Names are taken in sorted order, so two names that map alike (`source.ip` and
    # `source_ip`) always get the same distinct results: the second gets `_2`.
    result: dict[str, str] = {}
    for name in sorted(values):
        value = values[name]
        if value == "":
            continue  # Alertmanager drops empty labels; an empty value means absent
        mapped = base = label_name(name)
        suffix = 2
        while mapped in result:
            mapped, suffix = f"{base}_{suffix}", suffix + 1
        result[mapped] = value
    return result


def label_set(alert: Alert) -> dict[str, str]:
    """The alert's labels with Prometheus label names (empty values left out)."""
    return _mapped(alert.labels)


def annotation_set(alert: Alert, summary_language: Literal["vi", "en"] = "vi") -> dict[str, str]:
    """The record's annotations (names mapped like labels) plus `summary`,
    `description`, `evidence_ids`, `evidence_count`, `ioc_fingerprint`, `kind`
    and `flapping`."""
    notes = dict(alert.annotations)
    other = "en" if summary_language == "vi" else "vi"
    first = notes.get(f"summary_{summary_language}") or notes.get(f"summary_{other}")
    second = notes.get(f"summary_{other}")
    if first:
        notes.setdefault("summary", first)
    if second and second != first:
        notes.setdefault("description", second)
    evidence = alert.evidence
    if evidence.event_ids:
        notes["evidence_ids"] = ",".join(evidence.event_ids)
    if evidence.count is not None:
        notes["evidence_count"] = str(evidence.count)
    notes["ioc_fingerprint"] = alert.fingerprint
    notes["kind"] = alert.kind
    notes["flapping"] = "true" if alert.flapping else "false"
    return _mapped(notes)


def postable_alert(
    alert: Alert,
    now_ms: int,
    *,
    resend_s: float = 60.0,
    generator_url: str | None = None,
    summary_language: Literal["vi", "en"] = "vi",
) -> dict[str, Any]:
    """The Alertmanager v2 `postableAlert` for one alert state, sent at `now_ms`.

    Alertmanager works on wall-clock time and alerts carry event time: a time ahead
    of `now_ms` (clock skew, a simulation running ahead) is taken as now, so that a
    resolved alert is resolved at once and `startsAt <= endsAt` always holds.
    """
    starts_ms = min(alert.starts_at_ms, now_ms)
    if alert.state == "firing":
        ends_ms = now_ms + int(VALIDITY_RESENDS * resend_s * 1000)
    else:
        ends_ms = min(alert.ends_at_ms if alert.ends_at_ms is not None else now_ms, now_ms)
        ends_ms = max(ends_ms, starts_ms)
    payload: dict[str, Any] = {
        "labels": label_set(alert),
        "annotations": annotation_set(alert, summary_language),
        "startsAt": rfc3339(starts_ms),
        "endsAt": rfc3339(ends_ms),
    }
    if generator_url:
        payload["generatorURL"] = generator_url.replace(
            "{fingerprint}", quote(alert.fingerprint, safe="")
        ).replace("{alertname}", quote(alert.labels.get("alertname", ""), safe=""))
    return payload


# -- the sink ------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    alert: Alert
    record: SinkRecord
    taken_ms: int  # wall clock when write() took this state
    sent_ms: int | None = None  # last acknowledged send; None: not yet acknowledged


class AlertmanagerSink:
    """Sends alert state changes to one Alertmanager and keeps them alive there.

    Send to every member of an Alertmanager cluster (they deduplicate
    notifications): one sink per member, each with its own `name`.
    """

    topic = TOPIC

    def __init__(
        self,
        target: AlertmanagerConfig,
        *,
        name: str = "alertmanager",
        remember_s: float = 3600.0,
        summary_language: Literal["vi", "en"] = "vi",
        timeout_s: float = 10.0,
        backoff: Backoff | None = None,
        post: Post | None = None,
        clock: Callable[[], int] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        """`remember_s`: how long a resolved alert is remembered after its re-sends
        end, against replays. `summary_language`: which summary becomes the `summary`
        annotation; the other is `description`. `timeout_s`: how long one POST may take
        before it counts as a transient failure; `backoff`: the retry delays of
        transient failures. `post`, `clock` (wall ms), `sleep` and `random` are for
        tests. ValueError on a configuration that cannot work."""
        target.check()
        self.name = name
        self.target = target
        self.remember_s = remember_s
        self.summary_language = summary_language
        self.backoff = backoff or Backoff()
        self.status = SinkStatus(
            evicted=0,
            extra={"url": redact_url(target.url), "auth": target.auth, "alerts": 0, "resent": 0},
        )
        self._own_post = post is None
        self._post: Post = post or AiohttpPost(timeout_s)
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._sleep = sleep
        self._random = random
        self._entries: dict[str, _Entry] = {}
        self._rejected: list[Rejection] = []
        self._taken = 0
        self._tick_attempt = 0
        self._tick_not_before_ms = 0
        self._evicted_logged_ms = -EVICTION_LOG_EVERY_MS

    # -- Sink ----------------------------------------------------------------------

    async def open(self) -> None:
        if self._own_post and isinstance(self._post, AiohttpPost):
            await self._post.open()
        self.status.state = "up"

    async def write(self, records: list[SinkRecord]) -> None:
        now_ms = self._clock()
        for record in records:
            try:
                alert = Alert.from_json(record.value)
                if not alert.labels.get("alertname"):
                    raise ValueError("labels: alertname missing")
            except ValueError as exc:
                self._rejected.append(Rejection(record, f"not an ioc.alerts record: {exc}"))
                continue
            self._taken += 1
            held = self._entries.get(alert.fingerprint)
            if held is not None and alert.order < held.alert.order:
                continue  # an older state (a replay, or out of order): never resurrect
            # Re-inserted, so that the dict runs from the least recently updated.
            self._entries.pop(alert.fingerprint, None)
            self._entries[alert.fingerprint] = _Entry(alert, record, taken_ms=now_ms)
        self._update_counts()

    async def flush(self) -> list[Rejection]:
        rejected, self._rejected = self._rejected, []
        refused = 0
        pending = [entry for entry in self._entries.values() if entry.sent_ms is None]
        if pending:
            now_ms = self._clock()
            payloads = [self._payload(entry.alert, now_ms) for entry in pending]
            answer = await self._deliver(payloads)
            if answer.ok:
                for entry in pending:
                    entry.sent_ms = now_ms
            else:
                # Alertmanager stores the valid alerts of a batch and answers 400 for
                # the rest; one at a time finds which (re-posting is idempotent).
                for entry, payload in zip(pending, payloads, strict=True):
                    answer = await self._deliver([payload]) if len(pending) > 1 else answer
                    if answer.ok:
                        entry.sent_ms = now_ms
                        continue
                    reason = f"alertmanager {self.target.shown_endpoint}: {answer.describe()}"
                    log.error("alert %s rejected: %s", entry.alert.identity, reason)
                    rejected.append(Rejection(entry.record, reason))
                    refused += 1
                    del self._entries[entry.alert.fingerprint]
        self.status.written += self._taken - refused
        self.status.rejected += len(rejected)
        self._taken = 0
        self.status.state = "up"
        self._evict()  # after sending: every state taken is sent at least once
        self._update_counts()
        return rejected

    async def tick(self, now_ms: int) -> None:
        """Re-send acknowledged alerts due again; forget old resolved ones. One
        attempt per tick: a failure is retried at a later tick, with backoff."""
        resend_ms = int(self.target.resend_s * 1000)
        resolved_ms = int(self.target.resolved_resend_s * 1000)
        remember_ms = int(self.remember_s * 1000)
        due: list[_Entry] = []
        for fingerprint, entry in list(self._entries.items()):
            age_ms = now_ms - entry.taken_ms
            if entry.alert.state == "resolved" and age_ms > resolved_ms:
                if age_ms > resolved_ms + remember_ms:
                    del self._entries[fingerprint]
                continue
            if entry.sent_ms is not None and now_ms - entry.sent_ms >= resend_ms:
                due.append(entry)
        self._update_counts()
        if not due or now_ms < self._tick_not_before_ms:
            return
        body = orjson.dumps([self._payload(entry.alert, now_ms) for entry in due])
        answer: Answer | None = None
        try:
            answer = await self._post(self.target.endpoint, body, self._headers())
        except TransientError as exc:
            error = redact_text(str(exc), self.target.url)
        else:
            answer = answer.redacted(self.target.url)
            error = answer.describe()
        if answer is not None and not answer.transient:
            # A permanent refusal of what was accepted before is not worth hammering:
            # it is logged and tried again at the next re-send.
            if not answer.ok:
                self.status.last_error = f"re-send: {error}"
                log.error("re-send to %s refused: %s", redact_url(self.target.url), error)
            for entry in due:
                entry.sent_ms = now_ms
            self.status.extra["resent"] += len(due)
            self.status.state = "up"
            self._tick_attempt = 0
            return
        delay_s = self.backoff.delay(self._tick_attempt, self._random)
        self._tick_attempt += 1
        self._tick_not_before_ms = now_ms + int(delay_s * 1000)
        self.status.state = "retrying"
        self.status.last_error = f"{self.target.shown_endpoint}: {error}"
        self.status.retries += 1
        log.warning("re-send to %s failed (%s)", redact_url(self.target.url), error)

    async def close(self) -> None:
        if self._own_post and isinstance(self._post, AiohttpPost):
            await self._post.close()
        self.status.state = "stopped"

    # -- restoring after a restart ---------------------------------------------------

    @property
    def lookback_ms(self) -> int:
        """How far back the stage reads `ioc.alerts` for `restore`."""
        target = self.target
        return int(
            max(target.restore_lookback_s, target.resolved_resend_s + self.remember_s) * 1000
        )

    def restore(self, records: Iterable[tuple[SinkRecord, int]]) -> int:
        """Rebuild the states taken before a restart from `(record, produced at ms)`
        pairs of `ioc.alerts` that lie before the committed offsets (so they were
        acknowledged by the run before), in offset order per partition; before the
        first `write`. May be called several times with consecutive parts of the
        read-back (the stage does, so that it never holds the whole look-back).
        Returns how many states it took from these records.

        The latest state per fingerprint wins as in `write`. It counts as taken when
        the record was produced: a firing state is re-sent at the next `tick`, a
        resolved one too while within `resolved_resend_s` of that, then remembered
        against replays until `remember_s` after; older resolved ones are dropped
        (with what they resolve). States are held from the least recently produced,
        so that `max_alerts` forgets those first. Records that are not alerts are
        skipped (they were dead-lettered when read). Never replaces a state already
        held of the same or a higher order.
        """
        now_ms = self._clock()
        latest: dict[str, tuple[Alert, SinkRecord, int]] = {}
        for record, produced_ms in records:
            try:
                alert = Alert.from_json(record.value)
            except ValueError:
                continue
            if not alert.labels.get("alertname"):
                continue
            held = latest.get(alert.fingerprint)
            if held is not None and alert.order < held[0].order:
                continue
            taken_ms = now_ms if produced_ms < 0 else min(produced_ms, now_ms)
            latest[alert.fingerprint] = (alert, record, taken_ms)
        forget_after_ms = int((self.target.resolved_resend_s + self.remember_s) * 1000)
        restored = 0
        for fingerprint, (alert, record, taken_ms) in sorted(
            latest.items(), key=lambda item: item[1][2]
        ):
            held_entry = self._entries.get(fingerprint)
            if held_entry is not None and alert.order <= held_entry.alert.order:
                continue
            if alert.state == "resolved" and now_ms - taken_ms > forget_after_ms:
                # `tick` would forget it at once; an earlier part's state of it is over.
                self._entries.pop(fingerprint, None)
                continue
            # Acknowledged by the run before, at a time unknown: due at the next tick.
            self._entries.pop(fingerprint, None)
            self._entries[fingerprint] = _Entry(alert, record, taken_ms=taken_ms, sent_ms=0)
            restored += 1
        self._evict()
        self.status.extra["restored"] = self.status.extra.get("restored", 0) + restored
        self._update_counts()
        return restored

    # -- helpers -------------------------------------------------------------------

    def _payload(self, alert: Alert, now_ms: int) -> dict[str, Any]:
        return postable_alert(
            alert,
            now_ms,
            resend_s=self.target.resend_s,
            generator_url=self.target.generator_url,
            summary_language=self.summary_language,
        )

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        target = self.target
        if target.bearer_token:
            headers["Authorization"] = f"Bearer {target.bearer_token.get_secret_value()}"
        elif target.username is not None:
            password = target.password.get_secret_value() if target.password else ""
            pair = f"{target.username}:{password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    async def _deliver(self, payloads: list[dict[str, Any]]) -> Answer:
        return await deliver(
            self._post,
            self.target.endpoint,
            orjson.dumps(payloads),
            self._headers,
            status=self.status,
            backoff=self.backoff,
            sleep=self._sleep,
            random=self._random,
            shown=self.target.shown_endpoint,
            configured=self.target.url,
        )

    def _evict(self) -> None:
        """Forget the least recently updated states past `max_alerts`. A forgotten
        firing alert is no longer re-sent: Alertmanager resolves it on its own when its
        `endsAt` passes (within 3·resend_s), and its next state change is sent again."""
        excess = len(self._entries) - self.target.max_alerts
        if excess <= 0:
            return
        for fingerprint in list(itertools.islice(self._entries, excess)):
            del self._entries[fingerprint]
        self.status.evicted = (self.status.evicted or 0) + excess
        now_ms = self._clock()
        if now_ms - self._evicted_logged_ms >= EVICTION_LOG_EVERY_MS:  # a flood evicts often
            self._evicted_logged_ms = now_ms
            log.warning(
                "alertmanager %s: alert states forgotten past max_alerts=%d (%d in all)",
                self.name, self.target.max_alerts, self.status.evicted,
            )  # fmt: skip

    def _update_counts(self) -> None:
        self.status.queued = self._taken
        self.status.extra["alerts"] = len(self._entries)
