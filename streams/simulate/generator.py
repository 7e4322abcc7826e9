"""`Simulation`: the deterministic message sequence of one simulated run.

Background messages come at exactly `rate` per second, split between the families by
`FAMILY_SHARE`; the incidents' bursts come on top of them. The same arguments give the
same bytes: every draw comes from generators seeded by the arguments, never the global
`random` or the wall clock, and values are serialised with sorted keys.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

import orjson

from streams.simulate.city import CitySource
from streams.simulate.incidents import CYCLE_S, Incident, cycle_incidents, schedule
from streams.simulate.malformed import Malformer, corrupt
from streams.simulate.security import SecuritySource
from streams.simulate.services import ServiceDesk
from streams.topics import SOURCE, Family

__all__ = ["FAMILY_SHARE", "SimMessage", "Simulation"]

FAMILY_SHARE: Final = {"city": 0.45, "services": 0.10, "security": 0.45}
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
    at: float  # seconds since the start of the run; the events' time is start + at
    malformed: bool = False  # deliberately broken (see `malformed.py`): must be rejected


class _Source(Protocol):
    """What each family module offers the generator."""

    def background(self, at: float) -> tuple[bytes | None, Any]: ...

    def valid_event(self, at: float) -> dict[str, Any]: ...

    def incident_events(self, incident: Incident) -> list[tuple[float, bytes | None, Any]]: ...


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class Simulation:
    """A run of simulated provincial traffic.

    `duration` (seconds) ends the run and is also its incident cycle, so every incident
    happens once; without it the run never ends and the incidents repeat every
    `CYCLE_S` (600 s) with fresh entities. `start` must be timezone-aware; with
    `start=datetime.now(UTC)` the events are live.
    """

    def __init__(
        self,
        *,
        seed: int,
        start: datetime,
        rate: float,
        duration: float | None = None,
        bad_share: float = 0.01,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number of messages/s, got {rate}")
        if duration is not None and not duration > 0:
            raise ValueError(f"duration must be positive, got {duration}")
        if not 0.0 <= bad_share <= 1.0:
            raise ValueError(f"bad_share must be between 0 and 1, got {bad_share}")
        self.seed, self.start, self.rate = seed, start, rate
        self.duration, self.bad_share = duration, bad_share
        self.cycle_s = duration if duration is not None else CYCLE_S

    def incidents(self, horizon: float | None = None) -> list[Incident]:
        """The injected incidents, in start order: all of them for a run with a duration;
        for an endless run, those of the cycles that begin within `horizon` seconds
        (default: the first cycle)."""
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

        city = CitySource(start, random.Random(f"ioc-sim/city/{seed}"))
        sources: dict[Family, _Source] = {
            "city": city,
            "services": ServiceDesk(start, random.Random(f"ioc-sim/services/{seed}"), new_id),
            "security": SecuritySource(start, random.Random(f"ioc-sim/security/{seed}"), new_id),
        }
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
                        message = SimMessage(topic, key, _dumps(event), burst_at)
                        heapq.heappush(bursts, (burst_at, next(order), message))
                loaded += 1
            while bursts and bursts[0][0] <= at:
                yield heapq.heappop(bursts)[2]
            draw = rng.random()
            family: Family = (
                "city" if draw < city_share else "services" if draw < services_share else "security"
            )
            if self.bad_share and rng.random() < self.bad_share:
                yield self._malformed(family, sources[family], malformer, rng, at)
            else:
                key, event = sources[family].background(at)
                yield SimMessage(SOURCE[family], key, _dumps(event), at)
        while bursts:
            yield heapq.heappop(bursts)[2]

    @staticmethod
    def _malformed(
        family: Family, source: _Source, malformer: Malformer, rng: random.Random, at: float
    ) -> SimMessage:
        # Only background messages are replaced: the incidents stay whole.
        kind = malformer.next_kind(family)
        events = [source.valid_event(at) for _ in range(3 if kind == "bad_array" else 1)]
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
