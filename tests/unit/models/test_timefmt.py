"""Times and durations as records and declaration files write them."""

from __future__ import annotations

import pytest

from models.timefmt import parse_duration, rfc3339, rfc3339_ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("30s", 30_000), ("5m", 300_000), ("1h", 3_600_000), ("1d", 86_400_000),
     (1500, 1500), ("-7h", -25_200_000)],
)  # fmt: skip
def test_durations(text, ms):
    assert parse_duration(text) == ms


def test_rfc3339_round_trips_epoch_milliseconds():
    assert rfc3339(1_795_662_000_000) == "2026-11-26T03:00:00Z"
    assert rfc3339(1_795_662_000_123) == "2026-11-26T03:00:00.123Z"
    assert rfc3339_ms("2026-11-26T03:00:00.123Z") == 1_795_662_000_123
    assert rfc3339_ms("2026-11-26T10:00:00+07:00") == 1_795_662_000_000


@pytest.mark.parametrize("text", ["yesterday", "2026-11-26T03:00:00"])
def test_rfc3339_ms_needs_a_time_with_an_offset(text):
    with pytest.raises(ValueError):
        rfc3339_ms(text)
