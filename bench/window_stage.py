"""Window stage throughput through Kafka against a Faust windowed table and Quix
Streams, measured in one run on one broker with the same input.

    python bench/window_stage.py [--events 200000] [--stations 1000]
        [--broker tansu|apache] [--aggregates pm25|pack] [--quix-group-by]

Preloads validated air-quality readings (as bench/windows.py builds them: one per
station every 12 s of event time, slightly out of order) into `ioc.city.validated`,
keyed by refDevice as ingest keys them, then lets each of these read all of it with a
fresh consumer group:

1. our WindowStage, in this process (the stage as the worker runs it: batches from
   aiokafka, results to `ioc.aggregates`, a changelog checkpoint and a commit every
   second). `--aggregates pm25` (default): one tumbling 1-minute count + mean of pm25
   per refDevice, 5 s grace — the same work as the baselines; `--aggregates pack`: the
   default pack's city aggregates (a reading updates 3 of them; heavier than the
   baselines' work, so its ratios are not like for like);
2. a Faust agent updating a tumbling windowed table (bench/table_agent.py): [count,
   sum of pm25] per refDevice on event time, one changelog record per update;
3. Quix Streams (bench/quix_windows.py): tumbling 1-minute window, count and mean of
   pm25 per message key (= refDevice; `--quix-group-by` repartitions by the field
   instead), on event time, final results to a topic. Quix's pins conflict with ours
   (it would downgrade pydantic), so it runs with the python of a separate virtualenv,
   created on first use under ~/.cache/ioc-streams/bench-venv.

Each is timed from the first event it processes to the last, so start-up and group
join are left out. Reports events/s and process CPU per event for each, and the
ratios; the CPU figure moves less when other work shares the 2 cores (the load average
is printed too). Figures are for this machine and this run, never an assertion. A
system that fails is reported with its error and left out of the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

# bench/windows.py, beside this file: the validated readings of the engine benchmark.
from windows import check_format, readings

from models.aggregates import Aggregate, load_aggregates
from streams.core.windows import default_aggregates
from streams.devtools.brokers import local_broker
from streams.devtools.processes import free_port
from streams.worker import topics
from streams.worker.changelog import CHANGELOG_CONFIG
from streams.worker.kafka import ensure_topics
from streams.worker.metrics import Metrics
from streams.worker.settings import BrokerSettings, KafkaSettings, Settings, WindowSettings
from streams.worker.stages.windows import WindowStage
from streams.worker.topics import VALIDATED

HERE = Path(__file__).parent
TOPIC = VALIDATED["city"]
QUIX_OUTPUT = "bench.quix.aggregates"
QUIX_VERSION = "3.28.1"
TIMEOUT_S = 900

PM25_YAML = """
aggregates:
  - name: pm25_1m
    family: city
    filter: {type: AirQualityObserved}
    group_by: [refDevice]
    values: [pm25]
    statistics: [count, mean]
    window: {size: 1m, grace: 5s}
"""


class BaselineFailed(RuntimeError):
    """A system under comparison did not finish; the message has its output."""


@dataclass(frozen=True)
class Timing:
    """From the first event processed to the last: wall and process CPU seconds."""

    events: int
    seconds: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us(self) -> float:
        """Process CPU per event: less sensitive than the rate to other load on the
        machine, and blind to the time spent waiting on the broker."""
        return self.cpu / self.events * 1e6

    def __str__(self) -> str:
        # Below ~100 % CPU, the process waited on the broker (2 cores, shared with it).
        return (
            f"{self.events:,} events in {self.seconds:.2f} s, "
            f"process CPU {self.cpu / self.seconds:.0%} of that time"
        )


def bench_venv() -> Path:
    # Beside the cached Kafka jars (streams.devtools.brokers.apache.jar_cache_dir).
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ioc-streams" / "bench-venv"


def quix_python() -> Path:
    """The bench virtualenv's python, with Quix Streams installed on first use."""
    venv = bench_venv()
    python = venv / "bin" / "python"
    check = f"import quixstreams; assert quixstreams.__version__ == {QUIX_VERSION!r}"
    probe = [str(python), "-c", check]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return python
    print(f"installing quixstreams=={QUIX_VERSION} into {venv}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"quixstreams=={QUIX_VERSION}"],
        check=True,
    )
    return python


# -- input ---------------------------------------------------------------------------


async def preload(kafka: KafkaSettings, count: int, stations: int) -> str:
    """Validated readings into TOPIC, keyed by refDevice; returns their event-time span."""
    await ensure_topics(kafka, [*topics.ALL, QUIX_OUTPUT])
    records = readings(count, stations)
    check_format(records[0][1])
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        pending = []
        for _label, value in records:  # partitions: the key's, as ingest produces them
            key = orjson.loads(value)["refDevice"].encode()
            pending.append(await producer.send(TOPIC, value, key=key))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    first, last = (orjson.loads(records[i][1])["dateObserved"] for i in (0, -1))
    return f"{first} … {last}"


# -- ours ----------------------------------------------------------------------------


class TimedWindowStage(WindowStage):
    """The window stage, noting when it starts on its first record and when it has
    handled `expect` records (decoded, windows updated, results sent to the producer),
    and how long its batches and checkpoints took in between."""

    expect: int = 0
    handled: int = 0
    first: float | None = None
    last: float | None = None
    cpu: float = 0.0  # process CPU seconds between first and last
    handling: float = 0.0  # wall seconds in handle()
    checkpoints: int = 0
    checkpointing: float = 0.0  # wall seconds in checkpoint(): state, flush, commit

    async def handle(self, tp: TopicPartition, records: list[Any], now_ms: int) -> None:
        started = time.perf_counter()
        if self.first is None:
            self.first, self.cpu = started, time.process_time()
        await super().handle(tp, records, now_ms)
        self.handled += len(records)
        ended = time.perf_counter()
        if self.last is None:
            self.handling += ended - started
            if self.handled >= self.expect:
                self.last, self.cpu = ended, time.process_time() - self.cpu

    async def checkpoint(self) -> None:
        started = time.perf_counter()
        await super().checkpoint()
        if self.first is not None and self.last is None:
            self.checkpoints += 1
            self.checkpointing += time.perf_counter() - started


async def ours(kafka: KafkaSettings, aggregates: list[Aggregate], count: int) -> Timing:
    settings = Settings(
        app_id=f"bench-windows-{uuid.uuid4().hex[:6]}",
        kafka=kafka,
        windows=WindowSettings(),  # defaults: 5 s allowed lateness, 30 s idle timeout
        data_dir=Path("/tmp/bench-window-stage"),
    )
    changelog = topics.changelog(settings.app_id, WindowStage.name)
    await ensure_topics(kafka, [changelog], config=CHANGELOG_CONFIG)
    metrics = Metrics()
    stage = TimedWindowStage(settings, metrics, aggregates)
    stage.expect = count
    await stage.start()
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while stage.last is None:
            if stage.crashed:
                raise BaselineFailed(f"the window stage crashed: {stage.crash_reason!r}")
            if time.monotonic() > deadline:
                raise BaselineFailed(f"the window stage handled {stage.handled} of {count}")
            await asyncio.sleep(0.05)
        assert stage.first is not None
        timing = Timing(count, stage.last - stage.first, stage.cpu)
        async with stage.processing:
            started = time.perf_counter()
            await stage.checkpoint()  # what a checkpoint at the end costs: not in the rate
            final_checkpoint = time.perf_counter() - started
    finally:
        await stage.stop()
    finals = sum(
        metrics.registry.get_sample_value(
            "ioc_windows_results_total", {"aggregate": a.name, "final": "True"}
        )
        or 0.0
        for a in aggregates
    )
    print(
        f"  ours: {timing}; {finals:,.0f} final results; of that time "
        f"{stage.handling:.2f} s handling batches, {stage.checkpointing:.2f} s in "
        f"{stage.checkpoints} checkpoints, the rest waiting for fetches; a checkpoint at "
        f"the end took {final_checkpoint * 1000:.0f} ms more"
    )
    return timing


# -- baselines -----------------------------------------------------------------------


def _timing(marker: str, result: subprocess.CompletedProcess[str]) -> Timing:
    """From the child's `BENCH <what> <events> <wall seconds> <CPU seconds>` line."""
    # Faust's worker routes stdout through its logger, so look in both streams.
    for line in (result.stdout + result.stderr).splitlines():
        if marker in line:
            events, wall, cpu = line.split()[-3:]
            return Timing(int(events), float(wall), float(cpu))
    raise BaselineFailed(
        f"exit code {result.returncode}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )


def faust_table(bootstrap: str, count: int) -> Timing:
    app_id = f"bench-table-{uuid.uuid4().hex[:6]}"
    # Faust creates its leader topic after joining, and the metadata change costs a
    # second join: create it first, as `ioc worker` does.
    kafka = KafkaSettings(bootstrap=bootstrap)
    asyncio.run(ensure_topics(kafka, [topics.faust_leader(app_id)], partitions=1))
    env = {
        **os.environ,
        "IOC_KAFKA__BOOTSTRAP": bootstrap,
        "BENCH_APP_ID": app_id,
        "BENCH_EXPECT": str(count),
    }
    try:
        result = subprocess.run(
            [sys.executable, str(HERE / "table_agent.py"), "worker", "--without-web", "-l", "info"],
            env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
        )  # fmt: skip
    finally:
        shutil.rmtree(f"/tmp/bench-table-agent-{app_id}", ignore_errors=True)
    timing = _timing("BENCH table", result)
    print(f"  Faust table: {timing}")
    return timing


def quix(python: Path, bootstrap: str, count: int, group_by: bool) -> Timing:
    state_dir = tempfile.mkdtemp(prefix="bench-quix-")
    command = [
        str(python), str(HERE / "quix_windows.py"), "--bootstrap", bootstrap,
        "--topic", TOPIC, "--group", f"bench-quix-{uuid.uuid4().hex[:6]}",
        "--output", QUIX_OUTPUT, "--expect", str(count), "--state-dir", state_dir,
    ]  # fmt: skip
    if group_by:
        command.append("--group-by")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    timing = _timing("BENCH quix", result)
    print(f"  Quix Streams: {timing}")
    return timing


# -- the run -------------------------------------------------------------------------


def chosen_aggregates(which: str, directory: Path) -> tuple[list[Aggregate], str]:
    if which == "pack":
        aggregates = [a for a in default_aggregates() if a.family == "city"]
        names = ", ".join(a.name for a in aggregates)
        return aggregates, f"the default pack's city aggregates ({names}; a reading updates 3)"
    path = directory / "pm25.yaml"
    path.write_text(PM25_YAML)
    described = "pm25_1m (tumbling 1m, grace 5s, count + mean of pm25 per refDevice)"
    return load_aggregates(path), described


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--broker", choices=["tansu", "apache"], default="tansu")
    parser.add_argument("--aggregates", choices=["pm25", "pack"], default="pm25")
    parser.add_argument("--quix-group-by", action="store_true")
    parser.add_argument(
        "--only", action="append", choices=["ours", "faust", "quix"],
        help="run only this one (repeatable); all three by default",
    )  # fmt: skip
    args = parser.parse_args()

    chosen = args.only or ["ours", "faust", "quix"]
    # Before the broker starts: a first install takes a while.
    python = quix_python() if "quix" in chosen else None
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-window-stage-") as directory:
        aggregates, described = chosen_aggregates(args.aggregates, Path(directory))
        broker = local_broker(BrokerSettings(kind=args.broker, port=free_port())).start()
        try:
            kafka = KafkaSettings(bootstrap=broker.bootstrap)
            started = time.perf_counter()
            span = asyncio.run(preload(kafka, args.events, args.stations))
            print(
                f"broker {args.broker} at {broker.bootstrap}: preloaded {args.events:,} "
                f"readings of {args.stations:,} stations ({span}) into {TOPIC} "
                f"({kafka.partitions} partitions) in {time.perf_counter() - started:.1f} s"
            )
            print(f"our aggregates: {described}")
            timings: dict[str, Timing] = {}
            runs = {
                "ours": lambda: asyncio.run(ours(kafka, aggregates, args.events)),
                "faust": lambda: faust_table(broker.bootstrap, args.events),
                "quix": lambda: quix(
                    python or Path(), broker.bootstrap, args.events, args.quix_group_by
                ),
            }
            for name, run in runs.items():
                if name not in chosen:
                    continue
                try:
                    timings[name] = run()
                except (BaselineFailed, subprocess.TimeoutExpired) as exc:
                    print(f"  {name} failed on {args.broker}:\n{exc}")
        finally:
            broker.stop()

    labels = {
        "ours": "ours: WindowStage (in-process)",
        "faust": "Faust agent + tumbling table",
        "quix": f"Quix Streams {QUIX_VERSION}" + (" (group_by)" if args.quix_group_by else ""),
    }
    print(f"\nbroker: {args.broker}, {args.events:,} events, {args.stations:,} stations")
    # The machine has 2 cores: anything else running skews every figure above.
    print(f"load average at start {load_at_start:.2f}, at end {os.getloadavg()[0]:.2f}")
    print(f"{'':34s} {'events/s':>10s} {'CPU µs/event':>13s}")
    for name, timing in timings.items():
        print(f"{labels[name]:34s} {timing.rate:>10,.0f} {timing.cpu_us:>13.1f}")
    ours_ = timings.get("ours")
    for other in ("faust", "quix"):
        if ours_ is not None and other in timings:
            print(
                f"ratio ours / {other}: {ours_.rate / timings[other].rate:.2f} in events/s, "
                f"{timings[other].cpu_us / ours_.cpu_us:.2f} in CPU per event"
            )


if __name__ == "__main__":
    main()
