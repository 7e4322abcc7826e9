"""The injected incidents: the ground truth a rule engine should find.

Each incident sits at a fixed fraction of a cycle. The cycle is the run's duration when
one is given (every incident happens once), else `CYCLE_S` repeating; each cycle draws
its own entities (a new attacker, another station) from the seed and the cycle number,
so the schedule is a pure function of (seed, start, cycle length, cycle number).

Burst sizes grow with the window so that any 60 s inside it still holds enough events
to trip a typical rule, and have floors for short demos (60 s at 200 messages/s).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from streams.devtools.simulate.scenario import AGENCIES, devices_of

__all__ = ["CYCLE_S", "WINDOWS", "Incident", "IncidentKind", "cycle_incidents", "schedule"]

IncidentKind = Literal[
    "pollution_episode",
    "flood_rise",
    "sensor_silent",
    "brute_force",
    "password_spraying",
    "port_scan",
    "malware_outbreak",
    "overdue_dossiers",
]
CYCLE_S: Final = 600.0

#: (start, end) as fractions of the cycle.
WINDOWS: Final[dict[IncidentKind, tuple[float, float]]] = {
    "overdue_dossiers": (0.0, 1.0),
    "pollution_episode": (0.20, 0.60),
    "sensor_silent": (0.25, 1.0),
    "flood_rise": (0.30, 0.80),
    "brute_force": (0.30, 0.36),
    "password_spraying": (0.45, 0.52),
    "port_scan": (0.60, 0.65),
    "malware_outbreak": (0.72, 0.78),
}
_FAMILY: Final = {
    "pollution_episode": "city",
    "flood_rise": "city",
    "sensor_silent": "city",
    "overdue_dossiers": "services",
}


@dataclass(frozen=True, slots=True)
class Incident:
    kind: IncidentKind
    family: Literal["city", "services", "security"]
    entity: str  # station id, attacker source.ip, file hash or agency code
    district: str  # district name; the agency code for security incidents
    starts_at: datetime
    ends_at: datetime
    details: dict[str, Any] = field(default_factory=dict, hash=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "family": self.family,
            "entity": self.entity,
            "district": self.district,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "details": self.details,
        }


def _attacker(rng: random.Random, taken: set[str]) -> str:
    # Documentation ranges only (RFC 5737): the background traffic never uses them,
    # so every event from these addresses belongs to an incident.
    while True:
        ip = f"{rng.choice(('203.0.113', '198.51.100'))}.{rng.randrange(2, 255)}"
        if ip not in taken:
            taken.add(ip)
            return ip


def _entities(
    rng: random.Random, kind: IncidentKind, span: float, taken: dict[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    """Entity, district (or agency) and details of one incident with a `span`-second window."""
    if kind == "pollution_episode":
        station = rng.choice(devices_of("AirQualityObserved"))
        taken["polluted"] = station.id
        return (
            station.id,
            station.district,
            {
                "peak_pm25": round(rng.uniform(280.0, 360.0), 1),
                "readings": max(30, math.ceil(span / 10)),
            },
        )
    if kind == "flood_rise":
        gauge = rng.choice(devices_of("FloodMonitoring"))
        return (
            gauge.id,
            gauge.district,
            {
                "alertLevel": gauge.alert_level,
                "dangerLevel": gauge.danger_level,
                "peak_level": round(gauge.danger_level + 0.3, 2),
                "readings": max(30, math.ceil(span / 10)),
            },
        )
    if kind == "sensor_silent":
        candidates = [
            device
            for device in devices_of("AirQualityObserved") + devices_of("TrafficFlowObserved")
            if device.id != taken["polluted"]
        ]
        device = rng.choice(candidates)
        return device.id, device.district, {"model": device.model}
    if kind == "overdue_dossiers":
        agency = rng.choice([a for a in AGENCIES if a.code != "SO-TTTT"])
        return (
            agency.code,
            agency.district,
            {
                "dossiers": 12,
                "events": max(24, math.ceil(span / 20)),
            },
        )
    ips: set[str] = taken.setdefault("ips", set())
    if kind == "brute_force":
        agency = next(a for a in AGENCIES if a.code == "SO-TTTT")
        host = rng.choice(agency.servers)
        return (
            _attacker(rng, ips),
            agency.code,
            {
                "agency": agency.code,
                "host": host,
                "destination_ip": agency.server_ip(host),
                "port": 22,
                "user": rng.choice(("admin", "root", "quantri")),
                # Then one success: the same user from the same address gets in.
                "failures": max(60, math.ceil(span * 1.0)),
            },
        )
    if kind == "password_spraying":
        agency = next(a for a in AGENCIES if a.code == "SO-TTTT")
        # Fewer than 30 attempts a minute: a spray is wide, not fast, and so stays
        # distinguishable from a brute force on the same source.
        return (
            _attacker(rng, ips),
            agency.code,
            {
                "agency": agency.code,
                "host": "sso-01",
                "destination_ip": agency.server_ip("sso-01"),
                "port": 443,
                "users": max(26, math.ceil(span * 0.4)),
            },
        )
    if kind == "port_scan":
        agency = rng.choice(AGENCIES)
        host = rng.choice(agency.servers)
        return (
            _attacker(rng, ips),
            agency.code,
            {
                "agency": agency.code,
                "host": host,
                "destination_ip": agency.server_ip(host),
                "ports": min(65_000, max(120, math.ceil(span * 3))),
            },
        )
    assert kind == "malware_outbreak", kind
    agency = rng.choice(AGENCIES)
    numbers = rng.sample(range(1, 60), 4)
    return (
        f"{rng.getrandbits(256):064x}",
        agency.code,
        {
            "agency": agency.code,
            "hosts": [agency.workstation(n) for n in sorted(numbers)],
            "file_name": rng.choice(
                ("HoSo_ThanhToan_T11.exe", "CongVan_KhanCap.docm", "BangLuong_2026.xlsm.exe")
            ),
            "detections_per_host": 2,
        },
    )


def cycle_incidents(seed: int, start: datetime, cycle_s: float, cycle: int) -> list[Incident]:
    """The incidents of cycle number `cycle` (0-based), in start order."""
    rng = random.Random(f"ioc-sim/incidents/{seed}/{cycle}")
    taken: dict[str, Any] = {"polluted": None}
    incidents = []
    for kind, (begin, end) in WINDOWS.items():
        starts = cycle * cycle_s + begin * cycle_s
        ends = cycle * cycle_s + end * cycle_s
        entity, district, details = _entities(rng, kind, ends - starts, taken)
        incidents.append(
            Incident(
                kind,
                _FAMILY.get(kind, "security"),  # type: ignore[arg-type]
                entity,
                district,
                start + timedelta(seconds=starts),
                start + timedelta(seconds=ends),
                {"cycle": cycle, **details},
            )
        )
    return sorted(incidents, key=lambda incident: incident.starts_at)


def schedule(seed: int, start: datetime, cycle_s: float, horizon_s: float) -> list[Incident]:
    """Every incident of the cycles that begin before `horizon_s`."""
    cycles = max(1, math.ceil(horizon_s / cycle_s))
    return [
        incident
        for cycle in range(cycles)
        for incident in cycle_incidents(seed, start, cycle_s, cycle)
    ]
