"""Reading a worker's /metrics page."""

from __future__ import annotations

from streams.devtools.scrape import Samples, alert_counts, total


def test_alert_counts_sum_the_rule_stage_counter_by_state():
    samples: Samples = {
        ("ioc_rules_alerts_total", (("rule", "a"), ("state", "firing"))): 3.0,
        ("ioc_rules_alerts_total", (("rule", "b"), ("state", "firing"))): 2.0,
        ("ioc_rules_alerts_total", (("rule", "a"), ("state", "resolved"))): 1.0,
        ("ioc_rules_alerts_created", (("rule", "a"), ("state", "firing"))): 1e9,
        ("ioc_rules_inputs_total", (("rule", "a"),)): 50.0,
    }
    assert alert_counts(samples) == (5.0, 1.0)
    assert alert_counts({}) == (0.0, 0.0)


def test_total_sums_a_metric_over_its_labels():
    samples: Samples = {
        ("ioc_ingest_messages_total", (("family", "city"),)): 3.0,
        ("ioc_ingest_messages_total", (("family", "security"),)): 4.0,
        ("ioc_ingest_messages_created", (("family", "city"),)): 1e9,
    }
    assert total(samples, "ioc_ingest_messages_total") == 7.0
    assert total(samples, "ioc_absent_total") == 0
