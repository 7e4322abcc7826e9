"""Vietnamese air quality index, hourly (VN_AQI, Decision 1459/QĐ-TCMT of 12/11/2019).

Pure functions over hourly means. Concentrations are taken in the units our events
carry (docs/EVENTS.md): µg/m³ for everything except `co`, which arrives in mg/m³ and
is converted here (×1000) because the decision's tables use µg/m³ for CO too.

Hourly AQI (decision §2.2.1):

* PM2.5 and PM10 use the NowCast of the last 12 hourly means (c1 = the current hour):
  w* = Cmin/Cmax over the 12 values, w = w* if w* > 1/2 else 1/2, and
  NowCast = Σ w^(i−1)·ci / Σ w^(i−1). A missing ci gets weight 0; at least 2 of
  c1, c2, c3 must be present, otherwise there is no NowCast.
* O3, NO2, SO2 and CO use the current hour's mean; O3 against the O3 (1h) row.
* Sub-index: linear interpolation in Table 2, AQIx = (I(i+1) − Ii)/(BP(i+1) − BPi)·(Cx − BPi) + Ii.
* Overall AQI = the largest sub-index, rounded to an integer, and only when PM2.5 or
  PM10 has one: the decision makes at least one of the two mandatory.

Sources and what was checked against them
-----------------------------------------
* Decision text: a hand-checked transcription of the signed PDF published by the
  Vietnam Environment Administration (vea.mae.gov.vn, "QD 1459 TCMT ngay 12_11_2019
  AQI(1).pdf"), stored as `data/processed/qd_1459_vn_aqi.md` in the public repository
  qnguyenle075/hcmc-air-quality; its NOTES.md says Table 2 was checked cell by cell
  and the formulas re-typed from page images. The PDF itself was not read here.
  Verified from it: Table 1 (bands, labels, RGB), Table 2 (every breakpoint below),
  the NowCast definition and its two missing-data rules, formulas 1 and 2, "AQI^h =
  max(AQIx)", "rounded to an integer", the PM requirement, and the notes that the
  hourly O3 sub-index uses the O3 (1h) row and the 8-hour row serves the daily AQI.
  The decision's worked examples (§2.3) are reproduced in tests/unit/core/test_aqi.py.
* Table 2 cross-checked against independent open-source implementations found by
  exact-string search of public code: three in Python with all six pollutants (one
  with the O3 8h row too) and partial ones in C (Arduino), JavaScript and Java. All
  agree value for value. Table 1's colours match the hex codes of one of them
  (#00e400, #ffff00, #ff7e00, #ff0000, #8f3f97, #7e0023).

Choices the decision leaves open (not verifiable from the text)
---------------------------------------------------------------
* Rounding: half up (x.5 → up). It reproduces six of the seven worked sub-indices;
  the decision's hourly NO2 example (118.7 µg/m³) prints 60 where formula 1 gives
  59.35, and ceiling — the only rule giving 60 — contradicts its daily NO2 example
  (65.4 → 65). Probably a slip in the decision (or the transcription); unresolved.
* NowCast for w = 1/2: the decision writes Σ (1/2)^i·ci without a denominator. With
  12 complete hours that is the normalised formula times 1 − 2⁻¹², i.e. the same
  value to 0.025 %; with gaps the un-normalised form would drop towards zero, which
  the "missing ci → w^(i−1) = 0" rule (stated for the normalised weights) cannot mean.
  The normalised formula is used for both cases, as in the US EPA NowCast it copies.
  The NowCast is not truncated before interpolation (the decision does not say to).
* Above the top row (marked "≥" in Table 2, level 500) the sub-index stays 500.
* Ties between equal sub-indices name the dominant pollutant in the order of
  `POLLUTANTS` (PM2.5 first).
* The daily AQI (24-hour PM means, daily O3 1h/8h maxima, the "no O3 8h sub-index
  above 400 µg/m³" rule) is not implemented beyond the O3 (8h) row in `sub_index`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "BANDS",
    "BREAKPOINTS",
    "LEVELS",
    "POLLUTANTS",
    "AqiBand",
    "AqiResult",
    "band_of",
    "hourly_aqi",
    "nowcast",
    "sub_index",
]

#: Table 2, column Ii: the index at each breakpoint level i = 1..8.
LEVELS: tuple[int, ...] = (0, 50, 100, 150, 200, 300, 400, 500)

#: Table 2, BPi in µg/m³ (CO too). "o3" is the O3 (1h) row used by the hourly AQI;
#: "o3_8h" (levels 1–6 only) serves the daily AQI.
BREAKPOINTS: dict[str, tuple[float, ...]] = {
    "pm25": (0, 25, 50, 80, 150, 250, 350, 500),
    "pm10": (0, 50, 150, 250, 350, 420, 500, 600),
    "o3": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "o3_8h": (0, 100, 120, 170, 210, 400),
    "no2": (0, 100, 200, 700, 1200, 2350, 3100, 3850),
    "so2": (0, 125, 350, 550, 800, 1600, 2100, 2630),
    "co": (0, 10_000, 30_000, 45_000, 60_000, 90_000, 120_000, 150_000),
}

#: Event units → the decision's µg/m³: only `co` differs (mg/m³ in our events).
_TO_UG_M3: dict[str, float] = {"co": 1000.0}

#: The hourly AQI's inputs, in the order that breaks ties for the dominant pollutant.
POLLUTANTS: tuple[str, ...] = ("pm25", "pm10", "o3", "no2", "so2", "co")
_PARTICULATES = ("pm25", "pm10")
_NOWCAST_HOURS = 12


@dataclass(frozen=True, slots=True)
class AqiBand:
    """A row of Table 1: an AQI range and how it is shown to the public."""

    low: int
    high: int
    label_vi: str
    label_en: str
    rgb: tuple[int, int, int]


#: Table 1 of the decision.
BANDS: tuple[AqiBand, ...] = (
    AqiBand(0, 50, "Tốt", "good", (0, 228, 0)),
    AqiBand(51, 100, "Trung bình", "moderate", (255, 255, 0)),
    AqiBand(101, 150, "Kém", "poor", (255, 126, 0)),
    AqiBand(151, 200, "Xấu", "bad", (255, 0, 0)),
    AqiBand(201, 300, "Rất xấu", "very bad", (143, 63, 151)),
    AqiBand(301, 500, "Nguy hại", "hazardous", (126, 0, 35)),
)


@dataclass(frozen=True, slots=True)
class AqiResult:
    """One station-hour: the AQI, the pollutant that set it, and every sub-index."""

    aqi: int
    dominant: str
    sub_indices: dict[str, int]
    band: AqiBand


def band_of(aqi: int) -> AqiBand:
    """The Table 1 band of an AQI between 0 and 500."""
    for band in BANDS:
        if band.low <= aqi <= band.high:
            return band
    raise ValueError(f"AQI must be an integer between 0 and 500 (got {aqi!r})")


def _round_half_up(x: float) -> int:
    # Rounding to 9 places first absorbs float noise, so 109.49999999999999 (the
    # decision's 109.5) still rounds up.
    return math.floor(round(x, 9) + 0.5)


def _check(concentration: float, what: str) -> None:
    # Validated events carry finite, non-negative concentrations; anything else here
    # is a bug upstream, not bad input.
    if not math.isfinite(concentration) or concentration < 0:
        raise ValueError(f"{what}: concentration must be finite and >= 0 (got {concentration})")


def sub_index(pollutant: str, concentration: float) -> int | None:
    """The sub-index AQIx of one concentration (formula 1; formula 2 for a PM NowCast).

    `pollutant` is a key of `BREAKPOINTS`; the concentration is in event units (µg/m³,
    `co` in mg/m³). Above the top breakpoint the sub-index is 500. None only for
    "o3_8h" above 400 µg/m³, where Table 2 defines no 8-hour level.
    """
    try:
        breakpoints = BREAKPOINTS[pollutant]
    except KeyError:
        raise ValueError(
            f"unknown pollutant {pollutant!r}; expected one of {', '.join(BREAKPOINTS)}"
        ) from None
    _check(concentration, pollutant)
    c = concentration * _TO_UG_M3.get(pollutant, 1.0)
    for i in range(1, len(breakpoints)):
        if c <= breakpoints[i]:
            bp_lo, bp_hi = breakpoints[i - 1], breakpoints[i]
            i_lo, i_hi = LEVELS[i - 1], LEVELS[i]
            return _round_half_up((i_hi - i_lo) / (bp_hi - bp_lo) * (c - bp_lo) + i_lo)
    if len(breakpoints) < len(LEVELS):
        return None
    return LEVELS[-1]


def nowcast(hourly_means: Sequence[float | None]) -> float | None:
    """The NowCast of hourly means, most recent hour first; None marks a missing hour.

    Only the 12 most recent hours count. None when fewer than 2 of the 3 most recent
    hours have data. The result is in the units given.
    """
    hours = list(hourly_means[:_NOWCAST_HOURS])
    if sum(c is not None for c in hours[:3]) < 2:
        return None
    present = [(i, c) for i, c in enumerate(hours) if c is not None]
    for _, c in present:
        _check(c, "nowcast")
    c_max = max(c for _, c in present)
    if c_max == 0:
        return 0.0
    w_star = min(c for _, c in present) / c_max
    w = w_star if w_star > 0.5 else 0.5
    # i counts from 0 here, so w**i is the decision's w^(i−1).
    return sum(w**i * c for i, c in present) / sum(w**i for i, _ in present)


def hourly_aqi(history: Mapping[str, Sequence[float | None]]) -> AqiResult | None:
    """The hourly AQI (AQI^h) of one station.

    `history` maps a pollutant of `POLLUTANTS` to its hourly means, most recent hour
    first (at most 12 are used; None for a missing hour). PM2.5 and PM10 go through
    the NowCast; the gases use the current hour only. Other keys are ignored. None
    when neither PM2.5 nor PM10 yields a sub-index.
    """
    subs: dict[str, int] = {}
    for pollutant in POLLUTANTS:
        hours = history.get(pollutant)
        if not hours:
            continue
        value = nowcast(hours) if pollutant in _PARTICULATES else hours[0]
        if value is None:
            continue
        index = sub_index(pollutant, value)
        if index is not None:
            subs[pollutant] = index
    if not any(p in subs for p in _PARTICULATES):
        return None
    # max() keeps the first of equal values, so ties go by the order of POLLUTANTS.
    dominant = max(subs, key=subs.__getitem__)
    aqi = subs[dominant]
    return AqiResult(aqi=aqi, dominant=dominant, sub_indices=subs, band=band_of(aqi))
