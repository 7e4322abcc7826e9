"""Produce a `Simulation` to Kafka in real time: the only I/O of the simulator.

Messages leave when their `at` comes due on the event loop's clock. Everything already
due goes out in one go and only then does the loop sleep, so high rates cost one sleep
per batch rather than per message, and a producer that falls behind catches up at once.
A backfill (negative `at`) is always due: it goes out as fast as the producer allows,
then the live part follows, caught up with the clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Final

import orjson
from aiokafka import AIOKafkaProducer

from streams.devtools.simulate.generator import SimMessage, Simulation

__all__ = ["Progress", "manifest_json", "record_line", "run"]

SLACK_S: Final = 0.005  # a message this close to due is sent without sleeping first
SETTLE_EVERY: Final = 1_000  # deliveries awaited at the latest after this many sends
MANIFEST_HORIZON_S: Final = 3600.0  # an endless run's manifest looks this far ahead


@dataclass(slots=True)
class Progress:
    """What `run` has done so far, updated as it goes (read it from another task)."""

    sent: int = 0
    backfill_sent: int = 0
    backfill_s: float | None = None  # how long the backfill took; None until it is over


def manifest_json(simulation: Simulation, horizon_s: float) -> bytes:
    """Ground truth of a run: its arguments and the incidents it injects.

    `incidents` are those of the live part; a backfill has none and nothing malformed
    (its `incidents` list says so explicitly, for a reader that checks history too).
    """
    incidents = simulation.incidents(horizon_s)
    backfill = None
    if simulation.backfill:
        backfill = {
            "start": (simulation.start - timedelta(seconds=simulation.backfill)).isoformat(),
            "end": simulation.start.isoformat(),
            "seconds": simulation.backfill,
            "device_step_s": simulation.backfill_step,
            "incidents": [],
            "malformed": 0,
        }
    return orjson.dumps(
        {
            "seed": simulation.seed,
            "start": simulation.start.isoformat(),
            "rate": simulation.rate,
            "duration": simulation.duration,
            "bad_share": simulation.bad_share,
            "cycle_s": simulation.cycle_s,
            "covers_s": simulation.duration or horizon_s,
            "backfill": backfill,
            "incidents": [incident.as_json() for incident in incidents],
        },
        option=orjson.OPT_INDENT_2,
    )


def _write_atomically(path: Path, content: bytes) -> None:
    # Readers (a scorer, a test) never see a half-written manifest.
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)


def record_line(message: SimMessage) -> bytes:
    """One JSON line: the value decoded when it is JSON that survives a round trip,
    else its bytes as base64 under `value_b64` (broken JSON, non-UTF-8, 1e999)."""
    entry: dict[str, Any] = {
        "topic": message.topic,
        "key": message.key.decode("utf-8", "backslashreplace") if message.key else None,
    }
    try:
        value = orjson.loads(message.value)
        lossless = orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == message.value
    except orjson.JSONDecodeError:
        lossless = False
    if lossless:
        entry["value"] = value
    else:
        entry["value_b64"] = base64.b64encode(message.value).decode()
    return orjson.dumps(entry) + b"\n"


async def _settle(pending: list[asyncio.Future[Any]]) -> None:
    """Wait for the deliveries so far; a failed one raises here."""
    if pending:
        await asyncio.gather(*pending)
        pending.clear()


async def run(
    simulation: Simulation,
    client_options: dict[str, Any],
    *,
    manifest: Path | None = None,
    record: Path | None = None,
    stop: asyncio.Event | None = None,
    progress: Progress | None = None,
    before_live: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Produce `simulation` until its duration is over or `stop` is set.

    Writes the manifest before the first message (for an endless run, the incidents of
    the next hour, rewritten as the run goes on), appends each message to `record` as a
    JSON line, keeps `progress` up to date, and returns the number of messages
    delivered. With a backfill, `before_live` is awaited once the history is delivered
    and before the first live message (to let a processor read the history first).
    """
    stop = stop or asyncio.Event()
    progress = progress or Progress()
    loop = asyncio.get_running_loop()
    covered = MANIFEST_HORIZON_S
    if manifest is not None:
        _write_atomically(manifest, manifest_json(simulation, covered))
    producer = AIOKafkaProducer(**client_options, linger_ms=5)
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    try:
        await producer.start()  # inside: stop() also closes what a failed start opened
        with ExitStack() as files:
            recording: IO[bytes] | None = None
            if record is not None:
                recording = files.enter_context(record.open("ab"))
            began = loop.time()
            backfilling = simulation.backfill > 0
            for message in simulation.messages():
                if backfilling and message.at >= 0:
                    # Delivered, not just handed to the client: that is the backfill's
                    # time. The live part stays paced from `began`, so its first
                    # seconds catch up and event times keep following the clock.
                    await producer.flush()
                    await _settle(pending)
                    backfilling = False
                    progress.backfill_sent, progress.backfill_s = sent, loop.time() - began
                    if before_live is not None:
                        await before_live()
                delay = began + message.at - loop.time()
                if delay > SLACK_S:
                    await _settle(pending)
                    with contextlib.suppress(TimeoutError):  # timing out: the message is due
                        await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
                pending.append(await producer.send(message.topic, message.value, key=message.key))
                sent += 1
                progress.sent = sent
                if recording is not None:
                    recording.write(record_line(message))
                if len(pending) >= SETTLE_EVERY:
                    await _settle(pending)
                if (
                    manifest is not None
                    and simulation.duration is None
                    and (message.at > covered - simulation.cycle_s)
                ):
                    covered += MANIFEST_HORIZON_S
                    _write_atomically(manifest, manifest_json(simulation, covered))
            await producer.flush()
            await _settle(pending)
    finally:
        await producer.stop()
    return sent
