"""The console's trends (docs/CONSOLE.md, "Figures"): the last 24 hours of each figure's
series, from VictoriaMetrics when the time-series sink writes there, else from the
worker's own `TrendBuffer` (streams.core.figures).

    source = trend_source(settings.sinks.timeseries, buffer, aggregates)
    await source.open()
    trends = await source.trends()     # {"aqi:HD-AQ-001": [(at_ms, value), …], …}
    await source.close()

VictoriaMetrics (`VictoriaTrends`): one `GET {url}/api/v1/query_range` per figure, the
last 24 h at a 5-minute step, with the sink's basic auth. The sink's names
(sinks/lineprotocol.py): metric `ioc_aggregate_<statistic>`, label `aggregate`, group
labels made Prometheus-safe (`organization.name` → `organization_name`), by series prefix:

    aqi            max by (refDevice) (ioc_aggregate_aqi{aggregate="aqi_station_1h"})
    water          max by (refDevice)
                     (ioc_aggregate_currentLevel_last{aggregate="water_level_5m"})
    overdue        sum by (agency) (ioc_aggregate_overdue{aggregate="case_backlog"})
    failed_logins  sum by (organization_name)
                     (ioc_aggregate_count{aggregate="auth_failures_5m"})

`by (…)` keeps one series per key should a station change district or the operator add
tag labels; `sum` adds up the backlog's kinds and partitions. The sink stamps a point
with its window *start*, the buffer and the figures with its *end*: each query asks
for the range one window earlier and its timestamps are moved forward by the window
size (`window_sizes`), so both sources put a value at the same time.

Any failure (connection, the 2 s timeout, a status other than 200, an answer that is
not VictoriaMetrics' JSON) falls back to the buffer, for `retry_s` before VM is tried
again, so a dead server does not cost every request 2 s. Logged at most once a minute,
with the URL redacted (sinks/redaction.py); credentials only ever go in a header.
Answers are cached for `cache_s`: VM's points move every 5 minutes, and many pages
polling must not become many queries. InfluxDB targets have no PromQL: the buffer.

Not covered: VictoriaMetrics cluster (select and insert are different URLs; the sink
knows only the insert one). The shares of a failed-logins window from several input
partitions carry the same labels and timestamp, so VM keeps one of them (dedup) and
that trend undercounts where the buffer sums them (docs/AGGREGATES.md, known defect).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiohttp
import orjson

from models.aggregates import Aggregate
from models.derived import AQI_AGGREGATE, AQI_SOURCE_AGGREGATE, BACKLOG_AGGREGATE
from sinks.lineprotocol import MEASUREMENT, safe_name
from sinks.redaction import redact_text, redact_url
from sinks.timeseries import TimeseriesConfig
from streams.core.figures import (
    AQI_SERIES,
    FAILED_LOGINS_SERIES,
    OVERDUE_SERIES,
    SOURCES,
    TREND_POINTS,
    WATER_SERIES,
    Point,
    Sources,
    TrendBuffer,
    series_name,
)

__all__ = [
    "STEP_MS",
    "TIMEOUT_S",
    "BufferTrends",
    "RangeQuery",
    "TrendSource",
    "TrendsError",
    "VictoriaTrends",
    "parse_range",
    "query_params",
    "range_queries",
    "trend_source",
    "window_sizes",
]

log = logging.getLogger(__name__)

#: The step of the range queries, and the span: TREND_POINTS steps (24 h).
STEP_MS: Final = 5 * 60_000
SPAN_MS: Final = TREND_POINTS * STEP_MS
#: One query, connect to last byte.
TIMEOUT_S: Final = 2.0
#: Seconds between two log lines about VictoriaMetrics failing.
LOG_EVERY_S: Final = 60.0
#: Series taken from one answer; VM answers more only for a pack gone unbounded.
MAX_SERIES_PER_QUERY: Final = 5000
_PATH: Final = "/api/v1/query_range"


class TrendsError(ValueError):
    """VictoriaMetrics answered something that is not a range query's result."""


@dataclass(frozen=True, slots=True)
class RangeQuery:
    """One figure's series in VictoriaMetrics: the PromQL, the label that carries the
    figure's key in the answer, and how far to move VM's timestamps (its window size)."""

    prefix: str
    promql: str
    label: str
    shift_ms: int


def _selector(statistic: str, aggregate: str) -> str:
    quoted = aggregate.replace("\\", "\\\\").replace('"', '\\"')
    return f'{MEASUREMENT}_{safe_name(statistic)}{{aggregate="{quoted}"}}'


def window_sizes(aggregates: Iterable[Aggregate]) -> dict[str, int]:
    """Aggregate name → window size in ms (window end − start) for the pack, with the
    derived ones: `aqi_station_1h` has its source's window, `case_backlog` none (0)."""
    sizes = {aggregate.name: aggregate.window.size for aggregate in aggregates}
    if AQI_SOURCE_AGGREGATE in sizes:
        sizes.setdefault(AQI_AGGREGATE, sizes[AQI_SOURCE_AGGREGATE])
    sizes.setdefault(BACKLOG_AGGREGATE, 0)
    return sizes


def range_queries(sizes: Mapping[str, int], sources: Sources = SOURCES) -> list[RangeQuery]:
    """The four queries, one per figure (`sizes`: from `window_sizes`; an aggregate not
    in it is taken as stamped at its end, shift 0)."""
    station, agency = safe_name("refDevice"), safe_name("agency")
    organization = safe_name("organization.name")
    specs = [
        (AQI_SERIES, "max", station, "aqi", sources.aqi),
        (WATER_SERIES, "max", station, "currentLevel_last", sources.water),
        (OVERDUE_SERIES, "sum", agency, "overdue", sources.overdue),
        (FAILED_LOGINS_SERIES, "sum", organization, "count", sources.failed_logins),
    ]
    return [
        RangeQuery(
            prefix,
            f"{how} by ({label}) ({_selector(statistic, aggregate)})",
            label,
            sizes.get(aggregate, 0),
        )
        for prefix, how, label, statistic, aggregate in specs
    ]


def _seconds(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def query_params(
    query: RangeQuery, now_ms: int, span_ms: int = SPAN_MS, step_ms: int = STEP_MS
) -> dict[str, str]:
    """The query string of one range query: the `span_ms` ending at `now_ms`, in window
    ends (one window earlier in VM's window starts), `span_ms / step_ms` steps."""
    end = now_ms - query.shift_ms
    start = end - span_ms + step_ms
    return {
        "query": query.promql,
        "start": _seconds(start),
        "end": _seconds(end),
        "step": f"{_seconds(step_ms).rstrip('0').rstrip('.')}s",
    }


def parse_range(query: RangeQuery, body: bytes) -> dict[str, list[Point]]:
    """Series name → points (window end ms, value), oldest first, from VM's answer

        {"status": "success", "data": {"resultType": "matrix",
         "result": [{"metric": {"refDevice": "HD-AQ-001"}, "values": [[1795662000, "87"]]}]}}

    Values that are not finite numbers (VM's "NaN") are left out, and so are series
    without the key label. Raises TrendsError for anything else than such an answer.
    """
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TrendsError(f"not JSON: {exc}") from None
    if not isinstance(answer, dict) or answer.get("status") != "success":
        error = answer.get("error") if isinstance(answer, dict) else None
        raise TrendsError(f"query failed: {str(error)[:200] if error else 'no success status'}")
    data = answer.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        raise TrendsError("not a matrix result")
    result = data.get("result")
    if not isinstance(result, list):
        raise TrendsError("no result list")
    out: dict[str, list[Point]] = {}
    for entry in result[:MAX_SERIES_PER_QUERY]:
        if not isinstance(entry, dict):
            raise TrendsError("a result entry is not an object")
        metric, values = entry.get("metric"), entry.get("values")
        if not isinstance(metric, dict) or not isinstance(values, list):
            raise TrendsError("a result entry lacks metric or values")
        key = metric.get(query.label)
        if not isinstance(key, str) or not key:
            continue
        points = out.setdefault(series_name(query.prefix, key), [])
        for pair in values:
            points.extend(_point(pair, query.shift_ms))
    return {name: sorted(points) for name, points in out.items() if points}


def _point(pair: Any, shift_ms: int) -> list[Point]:
    try:
        seconds, text = pair
        value = float(text)
        at = round(float(seconds) * 1000)
    except (TypeError, ValueError) as exc:
        raise TrendsError(f"a sample is not [time, value]: {exc}") from None
    if not math.isfinite(value):
        return []
    # Counts and the AQI are whole: keep them integers in the JSON, as the buffer does.
    return [(at + shift_ms, int(value) if value.is_integer() else value)]


class TrendSource(Protocol):
    """Where `GET /api/figures` takes its trends from."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def trends(self) -> dict[str, list[Point]]:
        """Series name → points (window end ms, value), oldest first."""
        ...


class BufferTrends:
    """The worker's own finals since it started (no VictoriaMetrics configured)."""

    def __init__(self, buffer: TrendBuffer) -> None:
        self.buffer = buffer

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def trends(self) -> dict[str, list[Point]]:
        return self.buffer.trends()


class VictoriaTrends:
    """Trends from VictoriaMetrics' query API; the buffer whenever VM fails (above)."""

    def __init__(
        self,
        target: TimeseriesConfig,
        buffer: TrendBuffer,
        sizes: Mapping[str, int],
        *,
        sources: Sources = SOURCES,
        timeout_s: float = TIMEOUT_S,
        cache_s: float = 30.0,
        retry_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.buffer = buffer
        self.queries = range_queries(sizes, sources)
        self.url = f"{target.url}{_PATH}"
        self._shown = redact_url(target.url).rstrip("/") + _PATH
        self._headers = {"User-Agent": "ioc-streams", "Accept": "application/json"}
        # The sink's own basic auth header (sinks/timeseries.py), so both agree.
        if (authorization := target.headers().get("Authorization")) is not None:
            self._headers["Authorization"] = authorization
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._cache_s, self._retry_s = cache_s, retry_s
        self._clock, self._monotonic = clock, monotonic
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self._cached: tuple[float, dict[str, list[Point]]] | None = None  # (when, trends)
        self._down_until = -math.inf  # monotonic time before which VM is not asked
        self._logged = -math.inf  # monotonic time of the last failure logged
        #: The last failure (redacted), None while VM answers; for a status page.
        self.last_error: str | None = None

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def trends(self) -> dict[str, list[Point]]:
        async with self._lock:  # concurrent requests share one round of queries
            now = self._monotonic()
            if self._cached is not None and now - self._cached[0] < self._cache_s:
                return self._cached[1]
            if now < self._down_until:
                return self.buffer.trends()
            try:
                trends = await self._query()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self._failed(now, exc)
                return self.buffer.trends()
            if self.last_error is not None:
                log.info("trends: %s answers again", self._shown)
                self.last_error = None
            self._cached = (now, trends)
            return trends

    async def _query(self) -> dict[str, list[Point]]:
        now_ms = int(self._clock() * 1000)
        answers = await asyncio.gather(
            *(self._get(q, query_params(q, now_ms)) for q in self.queries),
            return_exceptions=True,
        )
        trends: dict[str, list[Point]] = {}
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
            trends.update(answer)
        return dict(sorted(trends.items()))

    async def _get(self, query: RangeQuery, params: Mapping[str, str]) -> dict[str, list[Point]]:
        if self._session is None:
            raise RuntimeError("VictoriaTrends used before open()")
        async with self._session.get(self.url, params=params) as response:
            body = await response.read()
            if response.status != 200:
                text = body[:200].decode(errors="replace").strip()
                raise TrendsError(f"HTTP {response.status} {text}".strip())
        return parse_range(query, body)

    def _failed(self, now: float, exc: BaseException) -> None:
        # aiohttp's messages and a server's answer may name the URL: redacted, and the
        # exception not logged with its traceback (whose cause would print it whole).
        error = redact_text(f"{type(exc).__name__}: {exc}".rstrip(": "), self.url)
        self.last_error = error
        self._cached = None
        self._down_until = now + self._retry_s
        if now - self._logged >= LOG_EVERY_S:
            self._logged = now
            log.warning(
                "trends: %s failed (%s); from this worker's finals for %.0f s",
                self._shown,
                error,
                self._retry_s,
            )


def trend_source(
    target: TimeseriesConfig | None,
    buffer: TrendBuffer,
    aggregates: Iterable[Aggregate],
    *,
    sources: Sources = SOURCES,
) -> TrendSource:
    """VictoriaMetrics' trends when the time-series sink writes there, else the buffer's."""
    if target is None or target.kind != "victoriametrics":
        return BufferTrends(buffer)
    return VictoriaTrends(target, buffer, window_sizes(aggregates), sources=sources)
