"""City observations: FIWARE Smart Data Models from the province's sensors.

Mostly keyValues, one event per message, keyed by `refDevice`; now and then an
NGSI-LD normalised event or a data hub's batch (a JSON array), both allowed by the
contract. Incident devices report on their own schedule during their window (gauges
and monitors switch to fast sampling in alarm), so the background leaves them alone.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from typing import Any, Final

from streams.devtools.simulate import climate
from streams.devtools.simulate.incidents import Incident
from streams.devtools.simulate.scenario import DEVICES, DISTRICT_BY_NAME, Device, devices_of

__all__ = ["CitySource", "normalised", "observation"]

_MODEL_SHARE: Final = {
    "AirQualityObserved": 0.35,
    "TrafficFlowObserved": 0.35,
    "FloodMonitoring": 0.12,
    "NoiseLevelObserved": 0.10,
    "WeatherObserved": 0.08,
}
NGSI_LD_SHARE: Final = 0.05
BATCH_SHARE: Final = 0.04
_BY_ID: Final = {device.id: device for device in DEVICES}
_INDUSTRIAL: Final = ("TP Chí Linh", "TX Kinh Môn")  # coal power and cement: SO₂
# UN/CEFACT unit codes, as NGSI-LD producers attach them.
_UNITS: Final = {
    "pm25": "GQ",
    "pm10": "GQ",
    "no2": "GQ",
    "o3": "GQ",
    "so2": "GQ",
    "co": "GP",
    "temperature": "CEL",
    "currentLevel": "MTR",
    "averageVehicleSpeed": "KMH",
    "LAeq": "2N",
    "LAmax": "2N",
}
_CONTEXT: Final = [
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/"
    "master/context.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld",
]


def _usual_pm25(device: Device, now: climate.Conditions) -> float:
    return now.pm25 * DISTRICT_BY_NAME[device.district].pollution * now.pollution


def _air(
    device: Device, now: climate.Conditions, rng: random.Random, pm25: float | None
) -> dict[str, Any]:
    district = DISTRICT_BY_NAME[device.district]
    if pm25 is None:
        pm25 = _usual_pm25(device, now) * rng.lognormvariate(0, 0.12)
    return {
        "pm25": round(pm25, 1),
        "pm10": round(pm25 * rng.uniform(1.35, 1.8), 1),
        "no2": round((15 + 30 * now.traffic) * district.pollution * rng.lognormvariate(0, 0.15), 1),
        "o3": round((15 + 70 * now.ozone) * rng.lognormvariate(0, 0.15), 1),
        "co": round((0.4 + 0.9 * now.traffic) * rng.lognormvariate(0, 0.1), 2),
        "so2": round((14 if device.district in _INDUSTRIAL else 6) * rng.lognormvariate(0, 0.2), 1),
        "airQualityIndex": climate.vn_aqi(pm25),
        "temperature": round(now.temperature + rng.gauss(0, 0.3), 1),
        "relativeHumidity": round(min(0.99, now.humidity + rng.gauss(0, 0.02)), 2),
    }


def _traffic(device: Device, now: climate.Conditions, rng: random.Random) -> dict[str, Any]:
    load = now.traffic * rng.uniform(0.8, 1.15)
    occupancy = min(0.95, 0.03 + 0.6 * min(load, 1.0) ** 1.6)
    return {
        "intensity": max(0, round(device.capacity * load)),  # vehicles in the last minute
        "occupancy": round(occupancy, 3),
        "averageVehicleSpeed": round(
            device.free_speed * (1 - 0.7 * occupancy) * rng.uniform(0.9, 1.05), 1
        ),
    }


def _weather(now: climate.Conditions, rng: random.Random) -> dict[str, Any]:
    raining = rng.random() < (0.25 if 5 <= now.month <= 9 else 0.08)  # the rainy season
    return {
        "temperature": round(now.temperature + rng.gauss(0, 0.3), 1),
        "relativeHumidity": round(min(0.99, now.humidity + (0.12 if raining else 0.0)), 2),
        "precipitation": round(rng.expovariate(1 / 4.0), 1) if raining else 0.0,  # mm/h
        "windSpeed": round(rng.lognormvariate(0.8, 0.4), 1),  # m/s
        "windDirection": rng.randrange(0, 360, 10),
    }


def _noise(now: climate.Conditions, rng: random.Random) -> dict[str, Any]:
    laeq = 48 + 22 * now.traffic + rng.gauss(0, 2)
    return {"LAeq": round(laeq, 1), "LAmax": round(laeq + rng.uniform(6, 18), 1)}


def observation(
    device: Device,
    when: datetime,
    rng: random.Random,
    *,
    pm25: float | None = None,
    level: float | None = None,
) -> dict[str, Any]:
    """One keyValues observation of `device` at `when`; `pm25`/`level` force a value."""
    now = climate.conditions(when)
    if device.model == "AirQualityObserved":
        values = _air(device, now, rng, pm25)
    elif device.model == "TrafficFlowObserved":
        values = _traffic(device, now, rng)
    elif device.model == "FloodMonitoring":
        current = climate.tide(device, when) if level is None else level
        values = {
            "currentLevel": round(current + rng.gauss(0, 0.01), 2),
            "alertLevel": device.alert_level,
            "dangerLevel": device.danger_level,
        }
    elif device.model == "WeatherObserved":
        values = _weather(now, rng)
    else:
        values = _noise(now, rng)
    stamp = climate.iso_local(when)
    time_field = "observationDateTime" if device.model == "FloodMonitoring" else "dateObserved"
    event = {
        "id": f"urn:ngsi-ld:{device.model}:{device.id}:{stamp}",
        "type": device.model,
        "refDevice": device.id,
        time_field: stamp,
        "areaServed": device.district,
        "location": {"type": "Point", "coordinates": [device.lon, device.lat]},
        **values,
    }
    if device.name:
        event["name"] = device.name
    return event


def normalised(event: dict[str, Any]) -> dict[str, Any]:
    """The same observation in NGSI-LD normalised form."""
    out: dict[str, Any] = {"id": event["id"], "type": event["type"], "@context": _CONTEXT}
    for name, value in event.items():
        if name in out:
            continue
        if name == "location":
            out[name] = {"type": "GeoProperty", "value": value}
        elif name == "refDevice":
            # The plain device id, as in keyValues, so both forms key the same entity.
            out[name] = {"type": "Relationship", "object": value}
        elif name in ("dateObserved", "observationDateTime"):
            out[name] = {"type": "Property", "value": {"@type": "DateTime", "@value": value}}
        else:
            out[name] = {"type": "Property", "value": value}
            if name in _UNITS:
                out[name]["unitCode"] = _UNITS[name]
    return out


def _smooth(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


class CitySource:
    """Background observations plus the readings of the city incidents."""

    def __init__(self, start: datetime, rng: random.Random) -> None:
        self._start = start
        self._rng = rng
        self._models = list(_MODEL_SHARE)
        self._weights = list(_MODEL_SHARE.values())
        self._devices = {model: devices_of(model) for model in _MODEL_SHARE}
        self._quiet: dict[str, tuple[float, float]] = {}  # device → (from, to) in run seconds
        self._receding: dict[str, tuple[float, float, float]] = {}  # gauge → (from, excess, tau)
        self._last_ms: dict[str, int] = {}

    def _pick(self, at: float) -> Device:
        while True:
            model = self._rng.choices(self._models, self._weights)[0]
            device = self._rng.choice(self._devices[model])
            quiet = self._quiet.get(device.id)
            if quiet is None or not quiet[0] <= at < quiet[1]:
                return device

    def _when(self, device: Device, at: float) -> datetime:
        # One reading per device per millisecond: the event id embeds the time and the
        # processor drops repeated ids as duplicates.
        ms = max(int(at * 1000), self._last_ms.get(device.id, -1) + 1)
        self._last_ms[device.id] = ms
        return self._start + timedelta(milliseconds=ms)

    def _reading(self, device: Device, at: float) -> dict[str, Any]:
        when = self._when(device, at)
        level = None
        if device.id in self._receding:
            since, excess, tau = self._receding[device.id]
            if at >= since:  # the river falls back to its tide after a flood
                level = climate.tide(device, when) + excess * math.exp(-(at - since) / tau)
        return observation(device, when, self._rng, level=level)

    def start_cycle(self, incidents: list[Incident]) -> None:
        for incident in incidents:
            if incident.kind in ("pollution_episode", "flood_rise", "sensor_silent"):
                self._quiet[incident.entity] = (
                    self._at(incident.starts_at),
                    self._at(incident.ends_at),
                )

    def _at(self, when: datetime) -> float:
        return (when - self._start).total_seconds()

    def background(self, at: float) -> tuple[bytes | None, Any]:
        """(key, JSON value) of one background message at `at` seconds into the run."""
        draw = self._rng.random()
        if draw < BATCH_SHARE:
            devices = {self._pick(at) for _ in range(self._rng.randint(2, 5))}
            # Several devices, so no single entity key; the contract allows none.
            return None, [self._reading(d, at) for d in sorted(devices, key=lambda d: d.id)]
        device = self._pick(at)
        event = self._reading(device, at)
        if draw < BATCH_SHARE + NGSI_LD_SHARE:
            event = normalised(event)
        return device.id.encode(), event

    def reading_of(self, device: Device, at: float) -> tuple[bytes, Any]:
        """(key, JSON value) of one reading of `device` at `at`, in either form."""
        event = self._reading(device, at)
        if self._rng.random() < NGSI_LD_SHARE:
            event = normalised(event)
        return device.id.encode(), event

    def valid_event(self, at: float) -> dict[str, Any]:
        """A keyValues air-quality reading: the raw material of malformed messages."""
        while (device := self._pick(at)).model != "AirQualityObserved":
            pass
        return self._reading(device, at)

    def incident_events(self, incident: Incident) -> list[tuple[float, bytes | None, Any]]:
        if incident.kind not in ("pollution_episode", "flood_rise"):
            return []  # a silent sensor is just absent from the background
        device = _BY_ID[incident.entity]
        begin, end = self._at(incident.starts_at), self._at(incident.ends_at)
        count = incident.details["readings"]
        step = (end - begin) / count
        events: list[tuple[float, bytes | None, Any]] = []
        first_level = climate.tide(device, incident.starts_at)
        for i in range(count):
            at = begin + (i + self._rng.uniform(0.3, 0.7)) * step
            f = (at - begin) / (end - begin)
            # Not `_when`: these are drawn ahead of the background, which stays away from
            # the device during the window, so the ids cannot collide anyway.
            when = self._start + timedelta(milliseconds=int(at * 1000))
            if incident.kind == "pollution_episode":
                envelope = _smooth(f / 0.1) * (1 - _smooth((f - 0.9) / 0.1))
                usual = _usual_pm25(device, climate.conditions(when))
                pm25 = usual + (incident.details["peak_pm25"] - usual) * envelope
                event = observation(
                    device, when, self._rng, pm25=pm25 * self._rng.uniform(0.95, 1.05)
                )
            else:
                peak, below_alert = incident.details["peak_level"], device.alert_level - 0.15
                level = first_level + (peak - first_level) * _smooth(f / 0.6)
                if f > 0.8:  # recession: back under the alert level by the window's end
                    level = peak - (peak - below_alert) * _smooth((f - 0.8) / 0.2)
                event = observation(device, when, self._rng, level=level)
            events.append((at, device.id.encode(), event))
        if incident.kind == "flood_rise":
            excess = device.alert_level - 0.15 - climate.tide(device, incident.ends_at)
            self._receding[device.id] = (end, excess, max(1.0, 0.1 * (end - begin)))
        return events
