import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from streams.worker.kafka import client_options
from streams.worker.settings import KafkaSettings, Settings

README = Path(__file__).parents[3] / "README.md"


def env_names(model: type[BaseModel], prefix: str = "IOC_") -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        # An optional section (`TimeseriesConfig | None`) is set through its fields too.
        sections = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(sections) == 1:
            annotation = sections[0]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def test_readme_lists_every_setting():
    readme = README.read_text()
    missing = [name for name in env_names(Settings) if f"`{name}`" not in readme]
    assert missing == []


def test_nested_environment_variables(monkeypatch):
    monkeypatch.setenv("IOC_KAFKA__BOOTSTRAP", "kafka-1:9093,kafka-2:9093")
    monkeypatch.setenv("IOC_KAFKA__FETCH_MAX_WAIT_MS", "200")
    settings = Settings()
    assert settings.kafka.bootstrap == "kafka-1:9093,kafka-2:9093"
    assert settings.kafka.fetch_max_wait_ms == 200


def test_sasl_needs_credentials_and_hides_the_password():
    with pytest.raises(ValidationError, match="needs sasl_username and sasl_password"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT")
    kafka = KafkaSettings(
        security_protocol="SASL_PLAINTEXT", sasl_username="ioc", sasl_password="s3cret"
    )
    assert "s3cret" not in repr(kafka) and "s3cret" not in str(kafka.model_dump())
    options = client_options(kafka)
    assert options["sasl_plain_password"] == "s3cret"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"


def test_heartbeat_must_fit_the_session_timeout():
    with pytest.raises(ValidationError, match="heartbeat_interval_s"):
        KafkaSettings(session_timeout_s=6, heartbeat_interval_s=3)


def test_settings_are_frozen():
    with pytest.raises(ValidationError):
        Settings().kafka.bootstrap = "elsewhere:9092"  # type: ignore[misc]
