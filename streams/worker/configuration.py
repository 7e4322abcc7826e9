"""The aggregates and rules a worker runs: the configured files, or the default packs.

Resolved here once for everyone who needs them (the worker, `ioc backtest`, the
demo's report), so that "the aggregates file or the default pack; the rules file or
the default pack checked against those aggregates" means the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.aggregates import Aggregate, default_aggregates, load_aggregates
from models.derived import AQI_AGGREGATE, BACKLOG_AGGREGATE
from models.rulefile import default_rules, load_rules
from models.rules import Rule
from streams.core.windows.hourly_aqi import HourlyAqi
from streams.worker.settings import Settings

__all__ = ["Configuration", "configured", "resolve"]


@dataclass(frozen=True)
class Configuration:
    """What `resolve` loaded, and from where (None: the default pack)."""

    aggregates: list[Aggregate]
    rules: list[Rule]
    aggregates_file: Path | None = None
    rules_file: Path | None = None

    @property
    def rule_names(self) -> list[str]:
        """The rules' names, in the pack's order."""
        return [rule.name for rule in self.rules]

    @property
    def outputs(self) -> list[str]:
        """What the worker puts in `ioc.aggregates`: the aggregates, then the derived
        ones (the hourly AQI when the aggregates can feed it, the case backlog)."""
        names = [aggregate.name for aggregate in self.aggregates]
        if HourlyAqi.for_pack(self.aggregates) is not None:
            names.append(AQI_AGGREGATE)
        return [*names, BACKLOG_AGGREGATE]

    def left_out_rules(self) -> list[str]:
        """The default rules on aggregates that a custom aggregates file does not
        declare, which the default rules pack therefore leaves out (sorted); none with
        a rules file or the default aggregates."""
        if self.rules_file is not None or self.aggregates_file is None:
            return []
        return sorted({rule.name for rule in default_rules()} - set(self.rule_names))


def resolve(aggregates_file: Path | None, rules_file: Path | None) -> Configuration:
    """The aggregates of `aggregates_file` (the default pack when None) and the rules of
    `rules_file` checked against them (the default rules pack when None, without the
    rules those aggregates cannot feed).

    Raises AggregateConfigError or RuleConfigError listing every problem, OSError when
    a file cannot be read."""
    if aggregates_file is not None:
        aggregates = load_aggregates(aggregates_file)
    else:
        aggregates = default_aggregates()
    if rules_file is not None:
        rules = load_rules(rules_file, aggregates)
    else:
        rules = default_rules(aggregates)
    return Configuration(aggregates, rules, aggregates_file, rules_file)


def configured(settings: Settings) -> Configuration:
    """`resolve` for the files the settings name (`IOC_WINDOWS__AGGREGATES`,
    `IOC_RULES__RULES`)."""
    return resolve(settings.windows.aggregates, settings.rules.rules)
