"""The demo's traffic: the simulator against the demo's broker, a progress line every
`PROGRESS_EVERY_S` of what the worker has done meanwhile, and the console's addresses
and logins once the worker is ready."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from streams.devtools.scrape import alert_counts, read_metrics, total
from streams.devtools.simulate import Progress, Simulation, run

__all__ = ["PROGRESS_EVERY_S", "Announcement", "announce", "report_progress", "simulate"]

PROGRESS_EVERY_S: Final = 10.0


@dataclass
class Announcement:
    """A text to print once, as soon as `ready()` (blocking: an HTTP check) says so."""

    ready: Callable[[], bool]
    text: str
    printed: bool = False

    def print(self) -> None:
        if not self.printed:
            print(self.text, flush=True)
            self.printed = True

    def wait(self, worker: subprocess.Popen[bytes], timeout: float) -> bool:
        """Print it once ready, waiting up to `timeout` while the worker runs (a run that
        ended before the worker was ready); whether it was printed."""
        deadline = time.monotonic() + timeout
        while not self.printed and worker.poll() is None and time.monotonic() < deadline:
            if self.ready():
                self.print()
            else:
                time.sleep(0.5)
        return self.printed


async def simulate(
    simulation: Simulation,
    options: dict[str, object],
    worker: subprocess.Popen[bytes],
    metrics_url: str,
    progress: Progress,
    *,
    manifest: Path | None = None,
    record: Path | None = None,
    announcement: Announcement | None = None,
) -> int:
    """Run `simulation` until its end, Ctrl-C, SIGTERM or the worker stopping; the
    number of messages sent. The live part waits until ingest has read the history.
    Meanwhile `announcement` is printed as soon as it is ready."""
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_requested.set)

    async def watch_worker() -> None:
        while worker.poll() is None and not stop_requested.is_set():
            await asyncio.sleep(0.5)
        stop_requested.set()

    async def history_read() -> None:
        # Ingest reads the source partitions in batches, one after another, and a data
        # hub's batch (a JSON array without a key) feeds every validated partition: live
        # arrays read before another partition's history would move that validated
        # partition's watermark to now and make its history late. So the live part
        # waits until ingest has read the history.
        print(
            f"history delivered: {progress.backfill_sent} messages in"
            f" {progress.backfill_s:.1f} s; live traffic starts once ingest has read them",
            flush=True,
        )
        began = time.monotonic()
        first_read: float | None = None  # the worker may still be starting until then
        while not stop_requested.is_set():
            with contextlib.suppress(OSError):  # the web server is not up yet
                samples = await asyncio.to_thread(read_metrics, metrics_url)
                read = total(samples, "ioc_ingest_messages_total")
                now = time.monotonic()
                if read and first_read is None:
                    first_read = now
                if read >= progress.backfill_sent:
                    reading = f"{now - first_read:.1f} s" if first_read else "one poll"
                    print(
                        f"ingest read the history in {reading}"
                        f" ({now - began:.1f} s after its delivery)",
                        flush=True,
                    )
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_requested.wait(), 0.5)

    tasks: list[asyncio.Task[object]] = [
        asyncio.create_task(watch_worker()),
        asyncio.create_task(report_progress(metrics_url, progress, stop_requested)),
    ]
    if announcement is not None:
        tasks.append(asyncio.create_task(announce(announcement, stop_requested)))
    try:
        return await run(
            simulation,
            options,
            manifest=manifest,
            record=record,
            stop=stop_requested,
            progress=progress,
            before_live=history_read,
        )
    finally:
        stop_requested.set()
        await asyncio.gather(*tasks)


async def announce(
    announcement: Announcement, stop_requested: asyncio.Event, every_s: float = 0.5
) -> bool:
    """Print `announcement` once it is ready (polled every `every_s` off the loop,
    printed on it, between progress lines); whether it was before the demo stopped."""
    while not stop_requested.is_set() and not announcement.printed:
        if await asyncio.to_thread(announcement.ready):
            announcement.print()
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_requested.wait(), every_s)
    return announcement.printed


async def report_progress(url: str, progress: Progress, stop_requested: asyncio.Event) -> None:
    """Every PROGRESS_EVERY_S: what was sent, and the worker's counters with their rates
    over the interval (events/s that ingest accepted and the window stage read)."""
    began = time.monotonic()
    before: tuple[float, float, float] | None = None  # (time, accepted, windowed)
    while not stop_requested.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_requested.wait(), PROGRESS_EVERY_S)
        if stop_requested.is_set():
            return
        line = f"[{time.monotonic() - began:4.0f} s] sent {progress.sent}"
        if progress.backfill_s is not None:
            line += f" (history {progress.backfill_sent} in {progress.backfill_s:.1f} s)"
        try:
            # Blocking HTTP off the loop, so that producing never waits for the worker.
            samples = await asyncio.to_thread(read_metrics, url)
        except OSError:
            print(line + " · worker not answering yet", flush=True)
            continue
        now = time.monotonic()
        accepted = total(samples, "ioc_ingest_events_accepted_total")
        windowed = total(samples, "ioc_windows_events_total")
        finals = sum(
            value
            for (name, labels), value in samples.items()
            if name == "ioc_windows_results_total" and ("final", "True") in labels
        )
        line += (
            f" · ingest accepted {accepted:.0f} · windows read {windowed:.0f},"
            f" results {total(samples, 'ioc_windows_results_total'):.0f} ({finals:.0f} final),"
            f" late {total(samples, 'ioc_windows_late_events_total'):.0f}"
        )
        if before is not None:
            seconds = now - before[0]
            line += (
                f" · {(accepted - before[1]) / seconds:.0f} accepted/s,"
                f" {(windowed - before[2]) / seconds:.0f} windowed/s"
            )
        before = (now, accepted, windowed)
        firing, resolved = alert_counts(samples)
        line += f" · alerts {firing:.0f} firing / {resolved:.0f} resolved"
        print(line, flush=True)
