"""The hourly VN_AQI per station, derived from the finals of `air_station_1h`.

Decision 1459/QĐ-TCMT computes a station's hourly AQI from its last 12 hourly means:
the NowCast for PM2.5 and PM10, the current hour for the gases (streams.core.aqi). The
window engine already produces those means, as the final results of the hourly
aggregate `air_station_1h`; `HourlyAqi` keeps the last 12 of them per input
partition and station and turns each new final into a result of the derived
aggregate `aqi_station_1h`: same family, group and window, final, so its identity is
deterministic like every `WindowResult`.

History is keyed by the hour's window start: an hour without a final is a gap (None
in the NowCast), and a final delivered twice (a replay after a crash) overwrites its
hour instead of counting twice. A partition's finals close in window order, so no
later final there can need an hour 11 or more hours older than the newest hour the
partition has seen: such hours are evicted for every station of the partition, so a
station that falls silent does not keep its history for ever.

State for the changelog has the engine's shape, one entry per station and hour:
`aqi|<group as JSON>|<hour start ms>` → JSON {pollutant: hourly mean or null}, and
None (a tombstone) once the hour is evicted. The prefix cannot collide with the
engine's keys (`<aggregate>#…`, `@watermark`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any, Final

import orjson

from models.aggregates import Aggregate
from models.derived import AQI_AGGREGATE, AQI_SOURCE_AGGREGATE, unsuitable
from models.results import WindowResult
from streams.core.aqi import POLLUTANTS, hourly_aqi, nowcast, sub_index
from streams.core.sizing import kept

__all__ = ["HOURS", "STATE_PREFIX", "HourlyAqi"]

log = logging.getLogger(__name__)

#: Prefix of this state's changelog keys.
STATE_PREFIX: Final = "aqi|"
#: Hours of history in the NowCast (the current one included).
HOURS: Final = 12

_HOUR_MS: Final = 3_600_000
_PARTICULATES: Final = ("pm25", "pm10")

_SPAN: Final = (HOURS - 1) * _HOUR_MS  # from the oldest hour kept to the newest

Means = dict[str, float | None]  # pollutant → the hour's mean
Hours = dict[int, Means]  # hour start → that hour's means, for one station


def _concentration(value: Any) -> float | None:
    # Validated events carry finite, non-negative concentrations, so their means are
    # too; anything else came from a foreign producer and must not stop the stage
    # (sub_index raises on it), so it counts as a missing hour.
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


class _Partition:
    __slots__ = ("dirty", "latest", "stale", "stations")

    def __init__(self) -> None:
        self.stations: dict[str, Hours] = {}  # group as JSON → its hours
        self.latest: int | None = None  # the newest hour start seen on the partition
        self.dirty: set[tuple[str, int]] = set()  # (group as JSON, hour start)
        self.stale: list[str] = []  # restored keys of no use (evicted, old group_by)


class HourlyAqi:
    """Hourly AQI records from the final hourly means of one aggregate (`source`).

    Raises ValueError when `aggregates` has no aggregate named `source`, when that
    aggregate cannot feed the AQI (`unsuitable`), or when one is already named
    `aqi_station_1h`. Not thread-safe; one per stage, like the engine.
    """

    def __init__(self, aggregates: Sequence[Aggregate], source: str = AQI_SOURCE_AGGREGATE) -> None:
        found = next((a for a in aggregates if a.name == source), None)
        if found is None:
            raise ValueError(f"cannot derive {AQI_AGGREGATE}: no aggregate named {source!r}")
        why = unsuitable(found)
        if why is None and any(a.name == AQI_AGGREGATE for a in aggregates):
            why = f"an aggregate of the pack is already named {AQI_AGGREGATE}"
        if why is not None:
            raise ValueError(f"cannot derive {AQI_AGGREGATE} from {source!r}: {why}")
        self.source = source
        self.family = found.family
        self.group_by = list(found.group_by)
        #: The pollutants of the hourly AQI that the source measures, in tie-break order.
        self.pollutants = tuple(p for p in POLLUTANTS if p in found.values)
        self._partitions: dict[str, _Partition] = {}

    def frontiers(self, source_frontiers: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """The AQI's own (aggregate, frontier), from its source aggregate's: its records
        come with the source's finals (WindowEngine.aggregate_frontiers)."""
        return [(AQI_AGGREGATE, f) for name, f in source_frontiers if name == self.source]

    @classmethod
    def for_pack(
        cls, aggregates: Sequence[Aggregate], source: str = AQI_SOURCE_AGGREGATE
    ) -> HourlyAqi | None:
        """The deriver for a pack; None when the pack has no aggregate named `source`, or
        one that cannot feed the AQI (then logged once, with the reason)."""
        if not any(a.name == source for a in aggregates):
            return None
        try:
            return cls(aggregates, source)
        except ValueError as exc:
            log.warning("%s; no hourly AQI records", exc)
            return None

    # -- finals in, AQI records out ------------------------------------------------------

    def derive(self, partition: str, results: Iterable[WindowResult]) -> list[WindowResult]:
        """The AQI records for the source's finals among one partition's `results` (in
        the order the engine produced them); every other result is passed over."""
        source = self.source
        out = []
        for result in results:
            if result.final and result.aggregate == source:
                record = self.add(partition, result)
                if record is not None:
                    out.append(record)
        return out

    def add(self, partition: str, final: WindowResult) -> WindowResult | None:
        """Record one final hourly mean of the source and return that hour's AQI record.

        None for an hour already evicted (12 hours or more before the newest hour of the
        partition), which finals in window order never are.
        """
        p = self._partitions.get(partition)
        if p is None:
            p = self._partitions[partition] = _Partition()
        start = final.window_start
        if p.latest is not None and start < p.latest - _SPAN:
            return None
        station_id = orjson.dumps(final.group).decode()
        hours = p.stations.get(station_id)
        if hours is None:
            hours = p.stations[station_id] = {}
        statistics = final.statistics
        hours[start] = {
            pollutant: _concentration(statistics.get(f"{pollutant}_mean"))
            for pollutant in self.pollutants
        }
        p.dirty.add((station_id, start))
        if p.latest is None or start > p.latest:
            p.latest = start
            self._evict(p, start - _SPAN)
        return self._record(hours, final)

    def _evict(self, p: _Partition, oldest: int) -> None:
        """Forget every hour before `oldest`; runs once per new hour of the partition."""
        for station_id, hours in list(p.stations.items()):
            for start in [start for start in hours if start < oldest]:
                del hours[start]
                p.dirty.add((station_id, start))
            if not hours:
                del p.stations[station_id]

    def _record(self, hours: Hours, final: WindowResult) -> WindowResult:
        start = final.window_start
        history = {
            pollutant: [
                hours[hour].get(pollutant) if hour in hours else None
                for hour in range(start, start - HOURS * _HOUR_MS, -_HOUR_MS)
            ]
            for pollutant in self.pollutants
        }
        used = {
            pollutant: nowcast(means) if pollutant in _PARTICULATES else means[0]
            for pollutant, means in history.items()
        }
        result = hourly_aqi(history)
        statistics: dict[str, Any] = {
            "aqi": None if result is None else result.aqi,
            "dominant": None if result is None else result.dominant,
            "band": None if result is None else result.band.label_en,
            "band_vi": None if result is None else result.band.label_vi,
        }
        for pollutant in POLLUTANTS:
            value = used.get(pollutant)
            statistics[f"aqi_{pollutant}"] = None if value is None else sub_index(pollutant, value)
        for pollutant in _PARTICULATES:
            statistics[f"nowcast_{pollutant}"] = used.get(pollutant)
        return WindowResult(
            aggregate=AQI_AGGREGATE,
            family=self.family,
            group=final.group,
            window_start=start,
            window_end=final.window_end,
            statistics=statistics,
            count=final.count,
            final=True,
        )

    # -- state for the changelog ---------------------------------------------------------

    @staticmethod
    def owns(state_key: str) -> bool:
        """Whether a changelog state key is this deriver's (not the engine's)."""
        return state_key.startswith(STATE_PREFIX)

    def take_dirty(self, partition: str) -> list[tuple[str, bytes | None]]:
        """(state key, JSON payload or None for evicted) of every station-hour changed
        since the last call; clears the changes."""
        p = self._partitions.get(partition)
        if p is None:
            return []
        out: list[tuple[str, bytes | None]] = [(key, None) for key in p.stale]
        p.stale.clear()
        for station_id, start in sorted(p.dirty):
            hours = p.stations.get(station_id)
            means = None if hours is None else hours.get(start)
            payload = None if means is None else kept(orjson.dumps(means))
            out.append((f"{STATE_PREFIX}{station_id}|{start}", payload))
        p.dirty.clear()
        return out

    def restore(self, partition: str, items: Iterable[tuple[str, bytes | None]]) -> None:
        """Rebuild a partition from changelog items (the last value per key wins; None
        deletes), replacing whatever was held for it. Only keys it `owns`: the stage
        splits a partition's items between it and the engine. Entries of another
        group_by or already past eviction are tombstoned at the next `take_dirty`."""
        latest: dict[str, bytes | None] = {}
        for key, payload in items:
            latest[key] = payload
        p = _Partition()
        held: list[tuple[str, str, int, bytes]] = []
        for key, payload in latest.items():
            if payload is None:
                continue
            if not self.owns(key):
                raise ValueError(
                    f"{key!r} is not an {AQI_AGGREGATE} state key; restore it elsewhere"
                )
            station_id, _, hour = key.removeprefix(STATE_PREFIX).rpartition("|")
            if list(orjson.loads(station_id)) != self.group_by:
                p.stale.append(key)  # the source's group_by has changed since
                continue
            held.append((key, station_id, int(hour), payload))
        if held:
            p.latest = max(start for _, _, start, _ in held)
        oldest = (p.latest or 0) - _SPAN
        for key, station_id, start, payload in held:
            if start < oldest:
                p.stale.append(key)
                continue
            hours = p.stations.setdefault(station_id, {})
            stored = orjson.loads(payload)
            hours[start] = {
                pollutant: _concentration(stored.get(pollutant)) for pollutant in self.pollutants
            }
        self._partitions[partition] = p

    def drop(self, partition: str) -> None:
        """Forget a partition (revoked in a rebalance); its changelog state stays."""
        self._partitions.pop(partition, None)

    # -- introspection -------------------------------------------------------------------

    def state_entries(self, partition: str | None = None) -> int:
        """Station-hours held, i.e. this deriver's live changelog entries."""
        partitions = (
            self._partitions.values()
            if partition is None
            else [p for name, p in self._partitions.items() if name == partition]
        )
        return sum(len(hours) for p in partitions for hours in p.stations.values())
