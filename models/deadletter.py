"""The record written to `ioc.deadletter` for every rejected message or array element."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DeadLetter", "DeadLetterError"]

DeadLetterError = Literal["json", "schema", "too_large", "too_deep", "late", "sink", "internal"]


class DeadLetter(BaseModel):
    """Enough to find the original message, see what was wrong, and resend it fixed."""

    model_config = ConfigDict(frozen=True)

    source_topic: str
    partition: int
    offset: int
    key: str | None = Field(
        description="Message key as UTF-8 text (undecodable bytes escaped), its first 256 bytes."
    )
    key_truncated: bool = Field(False, description="The key was longer than 256 bytes.")
    element: int | None = Field(
        None, description="Index in a JSON array message; null when the whole message is rejected."
    )
    raw: str = Field(
        description="Base64 of the original message bytes, or of the rejected array element; "
        "of their first 16 KiB when `raw_truncated`."
    )
    raw_truncated: bool = Field(False, description="`raw` holds a prefix of the bytes only.")
    raw_bytes: int | None = Field(None, description="Size of the whole original bytes.")
    raw_sha256: str | None = Field(
        None, description="SHA-256 (hex) of the whole original bytes, when `raw_truncated`."
    )
    error: DeadLetterError
    reason: str = Field(description="Human-readable, naming the field path.")
    field: str | None = Field(None, description="Path of the first offending field, if any.")
    family: str = Field(
        description="The event family (city, services, security); for a record that is not "
        "an event: aggregates, rules, or the sink stage's name (sink-<name>)."
    )
    stage: str | None = Field(
        None,
        description="The stage that rejected it: ingest, windows, cases, rules-route, rules or "
        "sink-<name>; null in records written before the field existed.",
    )
    rejected_at: datetime

    @staticmethod
    def encode(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    def original(self) -> bytes:
        return base64.b64decode(self.raw)
