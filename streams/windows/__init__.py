"""Event-time windows over validated events: the pure core of the window stage.

`WindowEngine` takes normalised event dicts and returns `WindowResult`s (the records
of `ioc.aggregates`) and `LateEvent`s; `HourlyAqi` derives the hourly VN_AQI per
station from the finals of `air_station_1h`; `streams.stages.windows` does the Kafka
I/O around them. Aggregates are declared in YAML (`models.aggregates`); `DEFAULT_PACK` is
the pack for the reference province.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from models.aggregates import Aggregate, AggregateConfigError, WindowResult, load_aggregates
from streams.windows.aqi import HourlyAqi
from streams.windows.engine import WATERMARK_KEY, LateEvent, Output, WindowEngine
from streams.windows.plan import EventTimeError
from streams.windows.statistics import ALPHA

__all__ = [
    "ALPHA",
    "DEFAULT_PACK",
    "WATERMARK_KEY",
    "Aggregate",
    "AggregateConfigError",
    "EventTimeError",
    "HourlyAqi",
    "LateEvent",
    "Output",
    "WindowEngine",
    "WindowResult",
    "default_aggregates",
    "load_aggregates",
]

#: The aggregates of the reference province (Hải Dương), used when none are configured.
DEFAULT_PACK: Final = Path(__file__).resolve().parent.parent / "packs" / "aggregates.yaml"


def default_aggregates() -> list[Aggregate]:
    return load_aggregates(DEFAULT_PACK)
