"""The console's figures (streams.core.figures) fed by this worker's window and case
stages: the latest final of each figure's key and input partition, and the trend
buffer, which serves the trends unless VictoriaMetrics does.

A worker holds the finals of the partitions it owns: with several workers, each
console shows the figures of its own share (the alerts beside them are everyone's).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final

from mode import Service

from models.results import WindowResult
from streams.core.figures import SOURCES, TrendBuffer, build_figures
from streams.core.windows import Aggregate
from streams.worker.console.trends import trend_source
from streams.worker.settings import Settings

__all__ = ["MAX_KEYS", "FiguresFeed"]

#: Keys (aggregate, group, partition) whose latest final is held; past it the least
#: recently updated leave.
MAX_KEYS: Final = 20_000


class FiguresFeed(Service):
    def __init__(self, settings: Settings, aggregates: Iterable[Aggregate], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.buffer = TrendBuffer()
        self.trend_source = trend_source(settings.sinks.timeseries, self.buffer, aggregates)
        self._wanted = {SOURCES.aqi, SOURCES.water, SOURCES.overdue, SOURCES.failed_logins}
        self._latest: OrderedDict[tuple[Any, ...], tuple[str, WindowResult]] = OrderedDict()

    async def on_start(self) -> None:
        await self.trend_source.open()

    async def on_stop(self) -> None:
        await self.trend_source.close()

    def add(self, partition: str, result: WindowResult) -> None:
        """A final a stage of this worker produced from `partition`."""
        if not result.final or result.aggregate not in self._wanted:
            return
        key = (result.aggregate, tuple(map(str, result.group.values())), partition)
        held = self._latest.get(key)
        if held is not None and held[1].window_start > result.window_start:
            return
        self._latest.pop(key, None)
        self._latest[key] = (partition, result)
        if len(self._latest) > MAX_KEYS:
            self._latest.popitem(last=False)
        self.buffer.add(result, partition)

    def drop(self, partition: str) -> None:
        """A partition this worker no longer owns."""
        for key in [k for k in self._latest if k[2] == partition]:
            del self._latest[key]

    async def figures(self) -> dict[str, Any]:
        return build_figures(self._latest.values(), await self.trend_source.trends())
