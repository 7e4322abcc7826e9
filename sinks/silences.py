"""Console silences mirrored into Alertmanager (`/api/v2/silences`), so that its own
routing and receivers keep quiet for as long as the console's silence holds.

A console silence becomes an Alertmanager silence matching the alert's labels exactly
(as the Alertmanager sink maps them), from now until the silence's end, created by the
operator, its comment naming the console action (`[ioc <action id>]`): creating it
again for a replayed action finds it and does nothing. An unsilence expires the
silences the console made for that alert before it.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import orjson

from models.actions import AlertAction
from models.timefmt import rfc3339
from sinks.alertmanager import AlertmanagerConfig, label_name
from sinks.redaction import redact_url

__all__ = ["AlertmanagerSilences", "matchers"]

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0


def matchers(labels: dict[str, str]) -> list[dict[str, Any]]:
    """Exact matchers on the alert's labels, named as the sink names them."""
    return [
        {"name": label_name(name), "value": value, "isRegex": False, "isEqual": True}
        for name, value in sorted(labels.items())
        if value != ""
    ]


def _pairs(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    # Alertmanager may answer with its matchers in another order.
    return sorted((str(m.get("name")), str(m.get("value"))) for m in found)


def _tag(action: AlertAction) -> str:
    return f"[ioc {action.id}]"


class AlertmanagerSilences:
    """Creates and expires Alertmanager silences for console actions."""

    def __init__(self, config: AlertmanagerConfig) -> None:
        self.config = config
        self.base = config.url.rstrip("/") + "/api/v2"

    def _headers(self) -> dict[str, str]:
        config = self.config
        if config.bearer_token:
            return {"Authorization": f"Bearer {config.bearer_token.get_secret_value()}"}
        return {}

    def _auth(self) -> aiohttp.BasicAuth | None:
        config = self.config
        if config.username is None or config.bearer_token:
            return None
        password = config.password.get_secret_value() if config.password else ""
        return aiohttp.BasicAuth(config.username, password)

    async def _silences(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        async with session.get(f"{self.base}/silences") as response:
            response.raise_for_status()
            found = orjson.loads(await response.read())
        return found if type(found) is list else []

    async def apply(self, action: AlertAction) -> str:
        """Mirror one console action; what was done, for the log. Raises
        aiohttp.ClientError or TimeoutError when Alertmanager cannot be reached."""
        if action.action not in ("silence", "unsilence") or not action.labels:
            return "nothing to mirror"
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with aiohttp.ClientSession(
            timeout=timeout, headers=self._headers(), auth=self._auth()
        ) as session:
            existing = await self._silences(session)
            if action.action == "silence":
                return await self._create(session, action, existing)
            return await self._expire(session, action, existing)

    async def _create(
        self, session: aiohttp.ClientSession, action: AlertAction, existing: list[dict[str, Any]]
    ) -> str:
        tag = _tag(action)
        if any(tag in str(s.get("comment", "")) for s in existing):
            return "already mirrored"
        assert action.labels is not None and action.until_ms is not None
        body = {
            "matchers": matchers(action.labels),
            "startsAt": rfc3339(action.at_ms),
            "endsAt": rfc3339(action.until_ms),
            "createdBy": action.user,
            "comment": f"{action.reason or ''} {tag}".strip(),
        }
        json_body = {"Content-Type": "application/json"}
        url = f"{self.base}/silences"
        async with session.post(url, data=orjson.dumps(body), headers=json_body) as response:
            response.raise_for_status()
            made = orjson.loads(await response.read())
        return f"silence {made.get('silenceID', '?')} created in {redact_url(self.config.url)}"

    async def _expire(
        self, session: aiohttp.ClientSession, action: AlertAction, existing: list[dict[str, Any]]
    ) -> str:
        assert action.labels is not None
        wanted = _pairs(matchers(action.labels))
        expired = 0
        for silence in existing:
            active = (silence.get("status") or {}).get("state") == "active"
            ours = "[ioc " in str(silence.get("comment", ""))
            if active and ours and _pairs(silence.get("matchers") or []) == wanted:
                identity = str(silence.get("id", ""))
                async with session.delete(f"{self.base}/silence/{identity}") as response:
                    if response.status != 404:  # already gone is what we want
                        response.raise_for_status()
                expired += 1
        return f"{expired} silences expired in {redact_url(self.config.url)}"
