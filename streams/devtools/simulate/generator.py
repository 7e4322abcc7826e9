"""`Simulation`: the deterministic message sequence of one simulated run.

Background messages come at exactly `rate` per second, split between the families by
`FAMILY_SHARE`; the incidents' bursts come on top of them. The same arguments give the
same bytes: every draw comes from generators seeded by the arguments, never the global
`random` or the wall clock, and values are serialised with sorted keys.

A backfill of `backfill` seconds comes first, with negative `at`: the province's history
up to `start`, thinned so that a day of it stays small (every device reports once per
`backfill_step` on average, the other families keep their share of the traffic). It
is background only, no incidents and nothing malformed, and the live part continues
the same province: the open dossiers, the devices' clocks.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import orjson

from models.families import Family
from streams.devtools.simulate.city import CitySource
from streams.devtools.simulate.incidents import CYCLE_S, Incident, cycle_incidents, schedule
from streams.devtools.simulate.malformed import Malformer, corrupt
from streams.devtools.simulate.scenario import DEVICES
from streams.devtools.simulate.security import SecuritySource
from streams.devtools.simulate.services import ServiceDesk
from streams.worker.topics import SOURCE

__all__ = ["BACKFILL_STEP_S", "FAMILY_SHARE", "SimMessage", "Simulation", "backfill_rate"]

FAMILY_SHARE: Final = {"city": 0.45, "services": 0.10, "security": 0.45}
#: Seconds of simulated time between two backfill readings of one device, on average.
BACKFILL_STEP_S: Final = 300.0
_KEY_FIELD: Final = {
    "city": ("refDevice",),
    "services": ("dossier_id",),
    "security": ("source", "ip"),
}


@dataclass(frozen=True, slots=True)
class SimMessage:
    topic: str
    key: bytes | None
    value: bytes
    at: float  # seconds since the start of the run (< 0 in the backfill); events' time: start + at
    malformed: bool = False  # deliberately broken (see `malformed.py`): must be rejected


class _Source(Protocol):
    """What each family module offers the generator."""

    def background(self, at: float) -> tuple[bytes | None, Any]: ...

    def valid_event(self, at: float) -> dict[str, Any]: ...

    def incident_events(self, incident: Incident) -> list[tuple[float, bytes | None, Any]]: ...


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def backfill_rate(step_s: float) -> float:
    """Messages per second of simulated time in a backfill where each device reports
    once per `step_s` on average and the other families keep their `FAMILY_SHARE`."""
    return len(DEVICES) / step_s / FAMILY_SHARE["city"]


class Simulation:
    """A run of simulated provincial traffic.

    `duration` (seconds) ends the run and is also its incident cycle, so every incident
    happens once; without it the run never ends and the incidents repeat every
    `CYCLE_S` (600 s) with fresh entities. `start` must be timezone-aware; with
    `start=datetime.now(UTC)` the events are live. `backfill` seconds of thinned
    history (see the module's docstring) come before `start`.
    """

    def __init__(
        self,
        *,
        seed: int,
        start: datetime,
        rate: float,
        duration: float | None = None,
        bad_share: float = 0.01,
        backfill: float = 0.0,
        backfill_step: float = BACKFILL_STEP_S,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number of messages/s, got {rate}")
        if duration is not None and not duration > 0:
            raise ValueError(f"duration must be positive, got {duration}")
        if not 0.0 <= bad_share <= 1.0:
            raise ValueError(f"bad_share must be between 0 and 1, got {bad_share}")
        if not (math.isfinite(backfill) and backfill >= 0):
            raise ValueError(f"backfill must be 0 or a positive number of seconds, got {backfill}")
        if not (math.isfinite(backfill_step) and backfill_step > 0):
            raise ValueError(f"backfill_step must be a positive number of seconds: {backfill_step}")
        self.seed, self.start, self.rate = seed, start, rate
        self.duration, self.bad_share = duration, bad_share
        self.backfill, self.backfill_step = backfill, backfill_step
        self.cycle_s = duration if duration is not None else CYCLE_S

    def incidents(self, horizon: float | None = None) -> list[Incident]:
        """The injected incidents, in start order: all of them for a run with a duration;
        for an endless run, those of the cycles that begin within `horizon` seconds
        (default: the first cycle). The backfill has none."""
        if self.duration is not None:
            horizon = self.duration
        return schedule(self.seed, self.start, self.cycle_s, horizon or self.cycle_s)

    def messages(self) -> Iterator[SimMessage]:
        """The run's messages in `at` order; each call starts the same sequence afresh."""
        seed, start = self.seed, self.start
        rng = random.Random(f"ioc-sim/{seed}")
        # Event ids also depend on start: two runs with one seed must not look like
        # duplicates to the processor.
        ids = random.Random(f"ioc-sim/ids/{seed}/{start.isoformat()}")

        def new_id() -> str:
            return str(uuid.UUID(int=ids.getrandbits(128), version=4))

        # The sources count time from the backfill's beginning (their `at` is ours +
        # `shift`), so the history and the live part are one province: the desk's cases
        # and the devices' last readings carry over.
        shift = self.backfill
        origin = start - timedelta(seconds=shift)
        city = CitySource(origin, random.Random(f"ioc-sim/city/{seed}"))
        desk = ServiceDesk(origin, random.Random(f"ioc-sim/services/{seed}"), new_id)
        sources: dict[Family, _Source] = {
            "city": city,
            "services": desk,
            "security": SecuritySource(origin, random.Random(f"ioc-sim/security/{seed}"), new_id),
        }
        if shift:
            yield from self._backfill(city, desk, sources)
        malformer = Malformer()
        bursts: list[tuple[float, int, SimMessage]] = []
        order = itertools.count()
        city_share = FAMILY_SHARE["city"]
        services_share = city_share + FAMILY_SHARE["services"]
        loaded = 0
        for n in itertools.count():
            at = n / self.rate
            if self.duration is not None and at >= self.duration:
                break
            while loaded * self.cycle_s <= at:  # a cycle's bursts, before its first message
                incidents = cycle_incidents(seed, start, self.cycle_s, loaded)
                city.start_cycle(incidents)
                for incident in incidents:
                    topic = SOURCE[incident.family]
                    for burst_at, key, event in sources[incident.family].incident_events(incident):
                        message = SimMessage(topic, key, _dumps(event), burst_at - shift)
                        heapq.heappush(bursts, (message.at, next(order), message))
                loaded += 1
            while bursts and bursts[0][0] <= at:
                yield heapq.heappop(bursts)[2]
            draw = rng.random()
            family: Family = (
                "city" if draw < city_share else "services" if draw < services_share else "security"
            )
            if self.bad_share and rng.random() < self.bad_share:
                yield self._malformed(family, sources[family], malformer, rng, at, shift)
            else:
                key, event = sources[family].background(at + shift)
                yield SimMessage(SOURCE[family], key, _dumps(event), at)
        while bursts:
            yield heapq.heappop(bursts)[2]

    def _backfill(
        self, city: CitySource, desk: ServiceDesk, sources: dict[Family, _Source]
    ) -> Iterator[SimMessage]:
        """The history before `start`, in the sources' time (0 = backfill begins)."""
        rng = random.Random(f"ioc-sim/backfill/{self.seed}")
        devices = list(DEVICES)
        rng.shuffle(devices)
        turn = itertools.cycle(devices)  # each device in turn: none goes silent by chance
        rate = backfill_rate(self.backfill_step)
        city_share = FAMILY_SHARE["city"]
        services_share = city_share + FAMILY_SHARE["services"]
        key: bytes | None
        for n in itertools.count():
            at = n / rate
            if at >= self.backfill:
                return
            draw = rng.random()
            if draw < city_share:
                key, event = city.reading_of(next(turn), at)
                yield SimMessage(SOURCE["city"], key, _dumps(event), at - self.backfill)
                continue
            family: Family = "services" if draw < services_share else "security"
            if family == "services":
                # At a backfill's pace a case waits hours for its next step; live traffic
                # closes a case soon after it falls due, and only the overdue_dossiers
                # incident may leave cases open past due, so the history does the same.
                for key, event in desk.resolve_overdue(at):
                    yield SimMessage(SOURCE[family], key, _dumps(event), at - self.backfill)
            key, event = sources[family].background(at)
            yield SimMessage(SOURCE[family], key, _dumps(event), at - self.backfill)

    @staticmethod
    def _malformed(
        family: Family,
        source: _Source,
        malformer: Malformer,
        rng: random.Random,
        at: float,
        shift: float,
    ) -> SimMessage:
        # Only background messages are replaced: the incidents stay whole.
        kind = malformer.next_kind(family)
        events = [source.valid_event(at + shift) for _ in range(3 if kind == "bad_array" else 1)]
        key: Any = None
        if kind != "bad_array":
            key = events[0]
            for part in _KEY_FIELD[family]:
                key = key[part]
        return SimMessage(
            SOURCE[family],
            key.encode() if key else None,
            corrupt(family, kind, events, rng),
            at,
            malformed=True,
        )
