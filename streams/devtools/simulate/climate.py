"""Daily and seasonal cycles of the Red River delta, as plain functions of time.

Deterministic (no randomness here): the city generator adds noise on top. Figures are
climatological orders of magnitude for Hải Dương, good enough to look right on a
dashboard, not measurements.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from streams.devtools.simulate.scenario import VN_TZ, Device

__all__ = ["Conditions", "conditions", "iso_local", "peak", "tide", "vn_aqi"]

# Monthly mean air temperature (°C): cool, damp winters, hot monsoon summers.
_TEMPERATURE: Final = (16.4, 17.2, 19.9, 23.6, 27.3, 28.9, 29.2, 28.6, 27.4, 24.8, 21.6, 18.2)
# Monthly mean PM2.5 (µg/m³): winter inversions and straw burning push it up.
_PM25: Final = (78.0, 70.0, 58.0, 45.0, 35.0, 28.0, 25.0, 27.0, 33.0, 48.0, 65.0, 80.0)
# Vietnamese AQI breakpoints for PM2.5 (QĐ 1459/QĐ-TCMT): concentration → index.
_AQI_PM25: Final = (
    (0, 0),
    (25, 50),
    (50, 100),
    (80, 150),
    (150, 200),
    (250, 300),
    (350, 400),
    (500, 500),
)


def iso_local(when: datetime, timespec: str = "milliseconds") -> str:
    """RFC 3339 in Vietnam's local time: `2026-11-26T10:00:00.000+07:00`."""
    return when.astimezone(VN_TZ).isoformat(timespec=timespec)


def peak(hour: float, centre: float, width: float) -> float:
    """A bell around `centre` o'clock that wraps at midnight; 1.0 at the centre."""
    distance = min(abs(hour - centre), 24 - abs(hour - centre))
    return math.exp(-0.5 * (distance / width) ** 2)


@dataclass(frozen=True, slots=True)
class Conditions:
    """The province's state of the day at one moment, before local noise."""

    hour: float  # local time of day, 0–24
    month: int
    traffic: float  # 0–1: rush hours around 07:15 and 17:30, quiet midday, empty nights
    # Multiplier on particulates: morning and evening peaks (traffic under a shallow
    # mixing layer), a dip in the afternoon when the boundary layer is deepest.
    pollution: float
    pm25: float  # the month's mean PM2.5, µg/m³
    ozone: float  # 0–1: photochemical, builds up in the afternoon sun
    temperature: float  # °C: the month's mean plus a diurnal swing peaking at 14:00
    humidity: float  # 0–1: highest before dawn, lowest in the early afternoon


@functools.lru_cache(maxsize=8)
def _conditions_at(second: int) -> Conditions:
    local = datetime.fromtimestamp(second, VN_TZ)
    hour = local.hour + local.minute / 60 + local.second / 3600
    daily = math.cos(2 * math.pi * (hour - 14) / 24)
    return Conditions(
        hour=hour,
        month=local.month,
        traffic=min(
            1.0,
            0.12
            + 0.4 * peak(hour, 12.5, 4.0)
            + 0.55 * peak(hour, 7.25, 0.9)
            + 0.6 * peak(hour, 17.5, 1.0),
        ),
        pollution=(
            0.8
            + 0.35 * peak(hour, 8.0, 1.5)
            + 0.5 * peak(hour, 20.5, 2.0)
            - 0.25 * peak(hour, 14.5, 2.5)
        ),
        pm25=_PM25[local.month - 1],
        ozone=peak(hour, 14.0, 2.5),
        temperature=_TEMPERATURE[local.month - 1] + 3.5 * daily,
        humidity=0.78 - 0.14 * daily,
    )


def conditions(when: datetime) -> Conditions:
    # Nothing here changes within a second, and messages come in time order.
    return _conditions_at(math.floor(when.timestamp()))


def tide(gauge: Device, when: datetime) -> float:
    """Water level (m) without floods: the lower delta rivers feel the Gulf of Tonkin's
    tide (period ≈ 24.8 h here), the upper reaches much less."""
    hours = when.timestamp() / 3600
    phase = int(gauge.id[-3:]) * 0.9
    amplitude = 0.25 if gauge.district in ("Tứ Kỳ", "Thanh Hà", "Ninh Giang") else 0.12
    return gauge.base_level + amplitude * math.sin(2 * math.pi * hours / 24.84 + phase)


def vn_aqi(pm25: float) -> int:
    """The Vietnamese air quality index for a PM2.5 concentration (µg/m³)."""
    for (c_low, i_low), (c_high, i_high) in itertools.pairwise(_AQI_PM25):
        if pm25 <= c_high:
            return round(i_low + (i_high - i_low) * (pm25 - c_low) / (c_high - c_low))
    return 500
