"""Closed windows are evicted: 100,000 keys over many windows keep the state flat."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from models.timefmt import rfc3339
from streams.core.windows import WindowEngine, default_aggregates
from tests.unit.core.windows.events import CITY, T0, M

KEYS = 100_000
WINDOWS = 6
WINDOW = 5 * M


def reading(key: int, t: int) -> dict:
    return {
        "type": "AirQualityObserved",
        "refDevice": f"HD-AQ-{key:06d}",
        "dateObserved": rfc3339(t),
        "areaServed": f"District {key % 12}",
        "pm25": 20.0 + key % 50,
        "pm10": 35.5 + key % 70,
        "no2": 18.0 + key % 9,
        "o3": 40.0 + key % 11,
    }


def one_window(engine: WindowEngine, window: int) -> int:
    """One reading per key, spread over the window; then a checkpoint, as the stage does."""
    closed = 0
    start = T0 + window * WINDOW
    for key in range(KEYS):
        closed += len(engine.process(CITY, reading(key, start + key * WINDOW // KEYS), 0))
    engine.take_dirty(CITY)
    engine.advance(0)
    return closed


@pytest.mark.slow
def test_state_stays_bounded_over_many_windows():
    [station_5m] = [a for a in default_aggregates() if a.name == "air_station_5m"]
    engine = WindowEngine([station_5m], allowed_lateness_ms=5000)
    closed = 0
    objects = []
    for window in range(WINDOWS - 1):
        closed += one_window(engine, window)
        # One full window per key, plus at most the previous one still within grace.
        assert KEYS <= engine.open_windows() <= 2 * KEYS
        assert engine.state_entries() == engine.open_windows()
        gc.collect()
        objects.append(len(gc.get_objects()))
    assert closed == (WINDOWS - 2) * KEYS
    assert max(objects[1:]) < 1.02 * objects[1], objects  # no object left behind per window

    # Only what is allocated while tracing counts: the last window's state, while the
    # previous window's (allocated before) is freed.
    tracemalloc.start()
    try:
        closed += one_window(engine, WINDOWS - 1)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    open_ = engine.open_windows()
    assert open_ == KEYS and closed == (WINDOWS - 1) * KEYS
    per_key = used / open_
    print(
        f"\nair_station_5m: {open_:,} open windows hold {used / 1e6:.1f} MB, {per_key:.0f} B each"
    )
    assert per_key < 1500
