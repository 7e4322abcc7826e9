"""A Faust agent mirrors console silences into Alertmanager (sinks.silences).

An agent because each action is to be mirrored once, by whichever worker owns its
partition of `ioc.alert-actions` (Faust's consumer group shares them out and hands
them over), and the volume is a click at a time: Faust's per-message cost does not
matter here. Mirroring is idempotent (the Alertmanager silence names the action), so
an action read again after a handover changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import faust
from pydantic import ValidationError

from models.actions import AlertAction
from sinks.alertmanager import AlertmanagerConfig
from sinks.redaction import redact_text
from sinks.silences import AlertmanagerSilences
from streams.worker.topics import ALERT_ACTIONS

__all__ = ["ATTEMPTS", "mirror_silences"]

log = logging.getLogger(__name__)

#: Tries per action, a second apart then longer: Alertmanager restarting is brief; one
#: down for longer does not hold the agent's partition for ever (logged, then the next).
ATTEMPTS = 6


def mirror_silences(app: faust.App, config: AlertmanagerConfig) -> Any:
    """Register the agent on `app` (before it starts)."""
    silences = AlertmanagerSilences(config)
    topic = app.topic(ALERT_ACTIONS, key_type=bytes, value_type=bytes)

    @app.agent(topic, name="console-silences")
    async def mirror(stream: Any) -> None:
        async for value in stream:
            try:
                action = AlertAction.model_validate_json(value)
            except ValidationError:
                continue  # not an action: the console's board counts it
            if action.action in ("silence", "unsilence"):
                try:
                    await _apply(silences, action, config.url)
                except Exception:  # one action's bug must not stop the agent
                    log.exception("console %s %s not mirrored", action.action, action.id)

    return mirror


async def _apply(silences: AlertmanagerSilences, action: AlertAction, url: str) -> None:
    for attempt in range(ATTEMPTS):
        try:
            done = await silences.apply(action)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if attempt == ATTEMPTS - 1:
                log.error(
                    "console %s %s not mirrored to Alertmanager: %s",
                    action.action, action.id, redact_text(str(exc), url),
                )  # fmt: skip
                return
            await asyncio.sleep(min(2**attempt, 10))
        else:
            log.info("console %s %s: %s", action.action, action.id, done)
            return
