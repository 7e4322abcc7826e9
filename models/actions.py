"""What operators do to alerts: the records of topic `ioc.alert-actions` and the bodies of
the console's action requests (docs/CONSOLE.md).

An action names its alert by fingerprint (the Kafka key too, so one alert's actions
stay in order on one partition) and, for an acknowledgement, the episode it saw
(`episode_ms`, the alert's `starts_at_ms`): an alert that resolves and fires again is a
new episode, unacknowledged. Silences hold by fingerprint across episodes until
`until_ms`, like Alertmanager's.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = [
    "ACTIONS",
    "MAX_SILENCE_S",
    "AckRequest",
    "ActionKind",
    "AlertAction",
    "CommentRequest",
    "SilenceRequest",
    "UnsilenceRequest",
]

ActionKind = Literal["ack", "silence", "unsilence", "comment"]
ACTIONS: tuple[str, ...] = ("ack", "silence", "unsilence", "comment")
MIN_SILENCE_S = 60
MAX_SILENCE_S = 7 * 24 * 3600

_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
# Free text an operator types: bounded, no control characters but newlines and tabs.
_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500, pattern=_TEXT)]
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000, pattern=_TEXT)
]
UserName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AckRequest(_Body):
    reason: Reason | None = None


class SilenceRequest(_Body):
    duration_s: int = Field(ge=MIN_SILENCE_S, le=MAX_SILENCE_S)
    reason: Annotated[Reason, StringConstraints(min_length=1)]


class UnsilenceRequest(_Body):
    reason: Reason | None = None


class CommentRequest(_Body):
    text: Text


class AlertAction(BaseModel):
    """One record of `ioc.alert-actions`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    fingerprint: Annotated[str, StringConstraints(pattern=_FINGERPRINT.pattern)]
    action: ActionKind
    user: UserName
    at_ms: int = Field(ge=0)
    at: str = ""  # RFC 3339 of at_ms, for people
    episode_ms: int | None = None
    until_ms: int | None = None
    reason: Reason | None = None
    text: Text | None = None
    #: The alert's labels when the operator acted: what an Alertmanager silence matches.
    labels: dict[str, str] | None = None

    @model_validator(mode="after")
    def _complete(self) -> AlertAction:
        if self.action == "silence" and (self.until_ms is None or not self.reason):
            raise ValueError("a silence needs until_ms and a reason")
        if self.action == "comment" and not self.text:
            raise ValueError("a comment needs its text")
        if self.action == "ack" and self.episode_ms is None:
            raise ValueError("an acknowledgement names the episode it saw (episode_ms)")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()
