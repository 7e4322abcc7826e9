"""Event-time windows over validated events: the pure core of the window stage.

`WindowEngine` takes normalised event dicts and returns `WindowResult`s (the records
of `ioc.aggregates`) and `LateEvent`s; `HourlyAqi` derives the hourly VN_AQI per
station from the finals of `air_station_1h`; `streams.worker.stages.windows` does the Kafka
I/O around them. Aggregates are declared in YAML (`models.aggregates`, which also holds the
default pack of the reference province); an event without a readable time raises
`models.errors.EventTimeError`.
"""

from __future__ import annotations

from models.aggregates import DEFAULT_PACK, Aggregate, default_aggregates, load_aggregates
from models.results import WindowResult
from streams.core.windows.engine import WATERMARK_KEY, LateEvent, Output, WindowEngine
from streams.core.windows.hourly_aqi import HourlyAqi
from streams.core.windows.statistics import ALPHA

__all__ = [
    "ALPHA",
    "DEFAULT_PACK",
    "WATERMARK_KEY",
    "Aggregate",
    "HourlyAqi",
    "LateEvent",
    "Output",
    "WindowEngine",
    "WindowResult",
    "default_aggregates",
    "load_aggregates",
]
