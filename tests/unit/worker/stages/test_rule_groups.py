"""The rule stage reports the groups its rules hold and those absence rules dropped."""

from __future__ import annotations

from aiokafka import TopicPartition

from models.aggregates import default_aggregates
from models.rulefile import default_rules
from streams.core.progress import Frontier
from streams.core.rules.plan import RuleInput
from streams.worker import topics
from streams.worker.metrics import Metrics
from streams.worker.settings import RulesSettings, Settings
from streams.worker.stages.rules import RuleStage

AGGREGATES = default_aggregates()
RULES = default_rules(AGGREGATES)
DAY = 86_400_000


def test_groups_held_and_forgotten_are_counted_by_rule_and_reason():
    settings = Settings(_env_file=None, rules=RulesSettings(max_groups=10))
    metrics = Metrics()
    stage = RuleStage(settings, metrics, RULES, AGGREGATES)
    tp = TopicPartition(topics.rule_inputs(settings.app_id), 0)
    engine = stage.engines[tp] = stage._engine()
    assert engine.max_groups == 10
    engine.observe_progress([Frontier("ioc.city.validated:0", "events", "city", 0, False)])
    engine.advance(0)
    for device in range(12):  # two past the limit: the first two heard are evicted
        engine.process(RuleInput("sensor_silent", (f"d{device}",), 1 + device), 0)
    engine.observe_progress([Frontier("ioc.city.validated:0", "events", "city", 100_000, False)])
    engine.advance(0)
    stage._count_groups()
    sample = metrics.registry.get_sample_value
    assert sample("ioc_rules_groups", {"rule": "sensor_silent"}) == 10
    assert sample("ioc_rules_groups", {"rule": "brute_force"}) == 0
    evicted = {"rule": "sensor_silent", "reason": "max_groups"}
    assert sample("ioc_rules_groups_forgotten_total", evicted) == 2
    # Four days of silence: every one forgotten.
    engine.observe_progress([Frontier("ioc.city.validated:0", "events", "city", 4 * DAY, False)])
    engine.advance(0)
    stage._count_groups()
    assert sample("ioc_rules_groups", {"rule": "sensor_silent"}) == 0
    forgotten = {"rule": "sensor_silent", "reason": "forget_after"}
    assert sample("ioc_rules_groups_forgotten_total", forgotten) == 10
