"""The demo's worker: an `ioc worker` child process, and waiting until it has caught up.

The waits poll the worker's `/metrics` (and `/sinks`, which needs a login: the demo
reads it with an API token of its viewer, streams.devtools.demo.console) and give up
when the worker stops or time runs out: the demo then reports what there is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from typing import IO, Any

import orjson

from streams.devtools.processes import spawn
from streams.devtools.scrape import Samples, read_metrics, total

__all__ = [
    "read_sinks",
    "spawn_worker",
    "wait_for_ingest",
    "wait_for_sinks",
    "wait_for_stages",
    "worker_ready",
]


def spawn_worker(
    bootstrap: str, log: IO[bytes], environment: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`ioc worker` on the broker at `bootstrap`, its output to `log`.

    The worker reads its settings from the environment like any worker; only the
    bootstrap differs (the broker this demo started) and what `environment` adds (with
    --with-sinks: the sinks, the servers this demo started)."""
    env = {**os.environ, "IOC_KAFKA__BOOTSTRAP": bootstrap, **(environment or {})}
    return spawn(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_for_ingest(
    url: str, sent: int, worker: subprocess.Popen[bytes], timeout: float
) -> Samples:
    """Poll /metrics until ingest has read every message sent (or time runs out)."""
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            samples = read_metrics(url)
        except OSError:
            samples = {}
        if total(samples, "ioc_ingest_messages_total") >= sent:
            break
        time.sleep(0.5)
    return samples


def wait_for_stages(url: str, worker: subprocess.Popen[bytes], timeout: float) -> Samples:
    """Poll /metrics until the window and case stages have read what ingest accepted,
    or their counters have stood still for 3 s (a pack without some family never
    reads all of it), or time runs out."""
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    last: tuple[float, float] | None = None
    still_since = time.monotonic()
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            samples = read_metrics(url)
        except OSError:
            samples = {}
        accepted = total(samples, "ioc_ingest_events_accepted_total")
        services = samples.get(("ioc_ingest_events_accepted_total", (("family", "services"),)), 0)
        read = (
            total(samples, "ioc_windows_events_total"),
            total(samples, "ioc_cases_events_total"),
        )
        if samples and read[0] >= accepted and read[1] >= services:
            break
        if read != last:
            last, still_since = read, time.monotonic()
        elif time.monotonic() - still_since >= 3.0:
            break
        time.sleep(0.5)
    # What the stages produced from the last records goes out within a commit interval.
    time.sleep(1.5)
    return samples


def worker_ready(web: str) -> bool:
    """Whether the worker's `/health` says 200: every stage joined and running."""
    try:
        with urllib.request.urlopen(f"{web}/health", timeout=2.0) as response:
            return bool(response.status == 200)
    except OSError:  # not listening yet, or 503 (HTTPError)
        return False


def read_sinks(web: str, token: str) -> dict[str, Any]:
    """The worker's `/sinks` JSON: each sink's state and counts (`token`: an API token,
    since the console's access applies to `/sinks`)."""
    request = urllib.request.Request(f"{web}/sinks", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=2.0) as response:
        status: dict[str, Any] = orjson.loads(response.read())
    return status


def wait_for_sinks(
    web: str, worker: subprocess.Popen[bytes], timeout: float, token: str
) -> dict[str, Any]:
    """Poll the worker until its sink stages have read their topics to the end
    (`ioc_consumer_lag_records` of the `sink-*` stages 0), nothing is queued and the
    written counts have stood still for 2 s, or time runs out; the last `/sinks`."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    last: object = None
    still_since = time.monotonic()
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            status = read_sinks(web, token)
            samples = read_metrics(f"{web}/metrics")
        except (OSError, ValueError):
            time.sleep(0.5)
            continue
        lag = [
            value
            for (name, labels), value in samples.items()
            if name == "ioc_consumer_lag_records"
            and dict(labels).get("stage", "").startswith("sink")
        ]
        counts = {name: (s.get("written"), s.get("rejected")) for name, s in status.items()}
        queued = sum(int(sink.get("queued", 0)) for sink in status.values())
        if counts != last:
            last, still_since = counts, time.monotonic()
        elif not any(lag) and not queued and time.monotonic() - still_since >= 2.0:
            break
        time.sleep(0.5)
    return status
