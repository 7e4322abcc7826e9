"""The one settings object. Nothing else in the project reads the environment.

Priority: arguments > environment (`IOC_` prefix, nested with `__`, e.g.
`IOC_KAFKA__BOOTSTRAP=broker:9092`) > `.env` file > defaults. Build it once at
start-up with `Settings()` and pass it down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sinks.alertmanager import AlertmanagerConfig
from sinks.base import SinkConfig
from sinks.timeseries import TimeseriesConfig
from sinks.webhook import WebhookConfig

__all__ = [
    "BrokerSettings",
    "CasesSettings",
    "ConsoleSettings",
    "IngestSettings",
    "KafkaSettings",
    "RulesSettings",
    "Settings",
    "SinksSettings",
    "WebSettings",
    "WindowSettings",
]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap: str = Field("127.0.0.1:9092", description="Comma-separated host:port list.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(None, description="CA bundle to verify the brokers.")
    ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS).")
    ssl_keyfile: Path | None = Field(None, description="Client private key (mutual TLS).")
    # Group join and rebalance pause for about half the session timeout; Faust's 60 s
    # default means a 30 s wait at every start (measured, see docs/BROKERS.md).
    session_timeout_s: float = Field(10.0, gt=0)
    heartbeat_interval_s: float = Field(3.0, gt=0)
    # Faust hard-codes 1.5 s and some brokers hold every fetch for the full wait.
    fetch_max_wait_ms: int = Field(50, ge=0, le=30_000)
    commit_interval_s: float = Field(1.0, gt=0)
    # Without a linger the producer sends about one request per record, which costs
    # more CPU than validating the record (measured: ingest ~2.2k → ~3k messages/s).
    linger_ms: int = Field(5, ge=0, le=1000)
    max_batch_bytes: int = Field(262_144, ge=1024)
    max_poll_records: int = Field(5000, ge=1, description="Records a stage takes per fetch.")
    partitions: int = Field(4, ge=1, description="Partitions for topics the processor creates.")
    replication_factor: int = Field(1, ge=1)
    # Kafka's default message.max.bytes is 1 MiB (1,048,588); below it with room for
    # the record's own framing. Nothing the processor produces is larger.
    max_record_bytes: int = Field(
        1_000_000, ge=65_536, description="Largest record produced (key + value + headers)."
    )

    @model_validator(mode="after")
    def _credentials_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(f"{self.security_protocol} needs sasl_username and sasl_password")
        if self.heartbeat_interval_s * 3 > self.session_timeout_s:
            raise ValueError("heartbeat_interval_s must be at most a third of session_timeout_s")
        return self


class IngestSettings(_Section):
    max_message_bytes: int = Field(1_000_000, gt=0, description="Larger messages: `too_large`.")
    max_event_bytes: int = Field(
        262_144, gt=0, le=900_000,
        description="Largest validated event passed on (`too_large`): it must fit in every "
        "record derived from it below the record limit.",
    )  # fmt: skip
    max_elements: int = Field(
        10_000, ge=1, description="Events in one array message; more: the whole is `too_large`."
    )
    max_depth: int = Field(
        32, ge=2, le=200, description="Nesting of objects and arrays in an event: `too_deep`."
    )
    max_future_s: float = Field(300.0, ge=0, description="Tolerated clock skew of event times.")
    # A year and a month: a backfill of last year's records still goes through.
    max_past_s: float = Field(
        34_300_800.0, gt=0, description="Oldest event time accepted, before the processor's clock."
    )
    dedup_horizon_s: float = Field(3600.0, ge=0, description="How long an event id is remembered.")
    dedup_max_ids: int = Field(200_000, ge=0, description="Bound on remembered ids per family.")
    idle_timeout_s: float = Field(
        30.0, gt=0,
        description="A source partition caught up and silent this long is idle: it no longer "
        "holds back event time downstream, and its own runs on with the wall clock.",
    )  # fmt: skip


class WindowSettings(_Section):
    aggregates: Path | None = Field(
        None, description="Aggregates YAML file; the default pack when unset."
    )
    allowed_lateness_s: float = Field(
        5.0, ge=0, description="Watermark = the sources' event-time frontier − this."
    )
    idle_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Without progress from upstream (a foreign producer), after this long "
        "without events the wall clock moves a partition's watermark.",
    )
    # RocksDB is a spill area for state larger than RAM, rebuilt from the changelog on
    # every assignment; the changelog stays the only truth (streams.core.windows.store).
    store: Literal["memory", "rocksdb"] = Field(
        "memory", description="Where open windows' accumulators live: RAM, or RocksDB on disk."
    )
    store_cache_panes: int = Field(
        100_000, ge=1, description="rocksdb: accumulators kept in RAM per input partition."
    )
    # An exact set of ~36,000 user names outgrew Kafka's 1 MiB record in one pane; a
    # thousand values of at most 64 characters stay far below it.
    max_distinct_exact: int = Field(
        1000, ge=0, le=2000,
        description="Distinct values counted exactly per pane; beyond, a HyperLogLog "
        "estimate flagged in the result's `approximate`.",
    )  # fmt: skip


class CasesSettings(_Section):
    # At least a second: the stage looks at the clock about once a second.
    emit_every_s: float = Field(
        60.0, ge=1, description="How often each partition's case backlog is reported."
    )
    near_due_s: float = Field(
        86_400.0, ge=0, description="A case due within this long (and not overdue) is near due."
    )
    # Remembering a closed case stops a late, older event from reopening it for good;
    # the price is memory for every case closed within the horizon.
    closed_ttl_s: float = Field(
        86_400.0, ge=0, description="How long a closed case is remembered after it closed."
    )
    # Open cases are otherwise kept for ever: a case whose closing event was lost, or a
    # flood of made-up ids, would grow the book (and its changelog) without limit.
    max_open_per_agency: int = Field(
        100_000, ge=1,
        description="Open cases kept per agency and partition; past it the oldest by their "
        "latest event go, 1 % of this at once (ioc_cases_evicted_total{reason=\"cap\"}).",
    )  # fmt: skip
    open_ttl_s: float = Field(
        400 * 86_400.0, gt=0,
        description="An open case without an event for this long in event time is "
        "forgotten (ioc_cases_evicted_total{reason=\"expired\"}).",
    )  # fmt: skip


class RulesSettings(_Section):
    rules: Path | None = Field(
        None, description="Alert rules YAML file; the default pack when unset."
    )
    allowed_lateness_s: float = Field(
        5.0, ge=0, description="Rule inputs may arrive this much out of event-time order."
    )
    idle_timeout_s: float = Field(
        30.0, gt=0,
        description="After this much wall-clock silence a rule partition's event time "
        "runs on with the wall clock (absences, windows sliding).",
    )  # fmt: skip
    # Each pending input costs ~0.5 KB of RAM and one bit of the checkpoint's bitmap
    # per record between the oldest pending and the read position.
    max_pending: int = Field(
        1_000_000, ge=1,
        description="Rule inputs a partition holds back for event-time order; past this, "
        "the oldest is applied at once (ioc_rules_pending_overflow_total).",
    )  # fmt: skip
    # An absence group is ~0.4 KB of RAM and a changelog record of 0.1–0.5 KB.
    max_groups: int = Field(
        100_000, ge=1,
        description="Groups an absence rule keeps per partition; past this the least "
        "recently heard are evicted (ioc_rules_groups_forgotten_total{reason=max_groups}).",
    )  # fmt: skip


class SinksSettings(_Section):
    """Each sink is on when its section is set (e.g. `IOC_SINKS__TIMESERIES__URL`).
    A section is the sink's own configuration model (`sinks.base.SinkConfig`)."""

    timeseries: TimeseriesConfig | None = None
    alertmanager: AlertmanagerConfig | None = None
    webhook: WebhookConfig | None = None

    def configured(self) -> list[SinkConfig]:
        """The sections that are set, in field order: one sink each."""
        return [section for _, section in self if isinstance(section, SinkConfig)]


class WebSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(6066, ge=0, le=65535)


class ConsoleSettings(_Section):
    """The operators' console (docs/CONSOLE.md): who may log in, how long a session
    lasts, how much of the board each worker keeps."""

    users_file: Path | None = Field(
        None, description="The users file; default <data_dir>/users.json (`ioc users add`)."
    )
    session_secret: SecretStr | None = Field(
        None,
        description="Signs session cookies; the same on every worker of a deployment. "
        "Unset: each worker makes its own, and a login holds on that worker only.",
    )
    session_ttl_s: float = Field(12 * 3600, gt=0, description="A login lasts this long.")
    resolved_keep_s: float = Field(
        900, ge=0, description="A resolved alert stays on the board, dimmed, this long."
    )
    max_alerts: int = Field(
        50_000, ge=100, description="Alerts the board holds; past it the oldest resolved, "
        "then the oldest firing, leave it (ioc_console_evicted_total).",
    )  # fmt: skip

    def users_path(self, data_dir: Path) -> Path:
        return self.users_file if self.users_file is not None else data_dir / "users.json"


class BrokerSettings(_Section):
    """The local broker of `ioc broker` and `ioc demo`: the embedded Tansu (memory only)
    or a single-node Apache Kafka (KRaft) from Maven Central jars, for demos and tests."""

    kind: Literal["tansu", "apache"] = "tansu"
    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    controller_port: int | None = Field(None, ge=1, le=65535, description="apache only")
    kafka_version: str = Field("4.4.0", pattern=r"^\d+\.\d+\.\d+$", description="apache only")
    start_timeout_s: float = Field(90.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IOC_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    app_id: str = Field("ioc-streams", description="Consumer group and internal topic prefix.")
    data_dir: Path = Field(
        Path(".ioc-data"), description="Local scratch state: Faust tables, RocksDB window spills."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    kafka: KafkaSettings = KafkaSettings()
    ingest: IngestSettings = IngestSettings()
    windows: WindowSettings = WindowSettings()
    cases: CasesSettings = CasesSettings()
    rules: RulesSettings = RulesSettings()
    sinks: SinksSettings = SinksSettings()
    web: WebSettings = WebSettings()
    console: ConsoleSettings = ConsoleSettings()
    broker: BrokerSettings = BrokerSettings()
