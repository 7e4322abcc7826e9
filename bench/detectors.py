"""Rule detector throughput, without Kafka: the CPU budget of the hot raw-event kinds.

    python bench/detectors.py [--events 1000000] [--groups 10000] [--repeat 3]

Generates `--events` failed logins over `--groups` source IPs (a few hot, most
quiet, as a brute-force campaign looks), one every 0.5 ms of event time on average
and up to 2 s out of order, each with a user name from a pool of 500. Reports
observations/s for:

- count: `CountDetector(5 min, gte=10)`, `observe` per event;
- distinct: `DistinctDetector(1 h, gte=20)` on the user name, `observe` per event;

each with `advance` every 5,000 events (one checkpoint per fetched batch) at the
highest event time so far − 2 s. Best of `--repeat` runs, each on a fresh detector.
Figures are for this machine and run, never an assertion.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from streams.core.rules.detectors import CountDetector, DistinctDetector

T0 = 1_795_662_000_000  # 2026-11-26T03:00:00Z
BATCH = 5000
LATENESS_MS = 2000

Event = tuple[tuple[str], int, str, str]  # group, event time, user, event id


def logins(count: int, groups: int, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    ips = [(f"10.{k >> 16}.{(k >> 8) & 255}.{k & 255}",) for k in range(groups)]
    users = [f"user{u:03d}" for u in range(500)]
    out = []
    for i in range(count):
        # Zipf-like: a handful of attackers send most of the traffic.
        group = ips[min(int(rng.paretovariate(1.2)) - 1, groups - 1)] if i % 2 else ips[i % groups]
        t = T0 + i // 2 - rng.randint(0, LATENESS_MS)
        out.append((group, t, rng.choice(users), f"evt-{i}"))
    return out


def bench_count(events: list[Event]) -> tuple[float, int, int]:
    """Seconds, changes reported, groups held at the end."""
    detector = CountDetector(window_ms=5 * 60_000, gte=10)
    observe, advance = detector.observe, detector.advance
    changes = high = 0
    started = time.perf_counter()
    for n, (group, t, _user, event_id) in enumerate(events, 1):
        if observe(group, t, event_id) is not None:
            changes += 1
        if t > high:
            high = t
        if n % BATCH == 0:
            changes += len(advance(high - LATENESS_MS))
    return time.perf_counter() - started, changes, len(detector)


def bench_distinct(events: list[Event]) -> tuple[float, int, int]:
    detector = DistinctDetector(window_ms=3_600_000, gte=20)
    observe, advance = detector.observe, detector.advance
    changes = high = 0
    started = time.perf_counter()
    for n, (group, t, user, event_id) in enumerate(events, 1):
        if observe(group, t, user, event_id) is not None:
            changes += 1
        if t > high:
            high = t
        if n % BATCH == 0:
            changes += len(advance(high - LATENESS_MS))
    return time.perf_counter() - started, changes, len(detector)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    events = logins(args.events, args.groups)
    print(f"{args.events:,} events, {args.groups:,} groups, best of {args.repeat}")
    benches: dict[str, Callable[[list[Event]], tuple[float, int, int]]] = {
        "count": bench_count,
        "distinct": bench_distinct,
    }
    for name, bench in benches.items():
        runs = [bench(events) for _ in range(args.repeat)]
        best, changes, held = min(runs)
        print(
            f"{name:>8}: {args.events / best:>10,.0f} observations/s ({best:.2f} s;"
            f" {changes:,} condition changes, {held:,} groups held at the end)"
        )


if __name__ == "__main__":
    main()
