"""Reading a worker's Prometheus `/metrics` page: for the demo and the benchmarks."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Samples", "alert_counts", "read_metrics", "total"]

#: (name, sorted labels) → value of every sample of a page.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def read_metrics(url: str, timeout: float = 2.0) -> Samples:
    """Samples of a Prometheus /metrics page keyed by (name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str) -> float:
    """The sum of the samples called `name`, whatever their labels."""
    return sum(value for (sample, _), value in samples.items() if sample == name)


def alert_counts(samples: Samples) -> tuple[float, float]:
    """(firing, resolved) alert state changes the rule stage has written to `ioc.alerts`."""
    firing = resolved = 0.0
    for (name, labels), value in samples.items():
        if name == "ioc_rules_alerts_total":
            state = dict(labels).get("state")
            if state == "firing":
                firing += value
            elif state == "resolved":
                resolved += value
    return firing, resolved
