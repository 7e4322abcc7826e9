"""The console's HTTP side (docs/CONSOLE.md): the page, the alerts as JSON and as a live
stream of server-sent events, the operators' actions, the figures.

Plain aiohttp handlers on Faust's web application (its driver is aiohttp); who may call
them is decided before they run (streams.worker.console.auth's middleware puts the
user in `request[USER]`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from models.actions import AckRequest, AlertAction, CommentRequest, SilenceRequest, UnsilenceRequest
from models.timefmt import rfc3339
from streams.core.board import Board, Filters
from streams.worker.console.auth import USER
from streams.worker.console.feed import BoardFeed

__all__ = ["MAX_STREAMS", "install"]

STATIC: Final = Path(__file__).parent / "static"
#: Live streams one worker serves at once; more are refused with 503 (a wall and a
#: few dozen desks need far fewer).
MAX_STREAMS: Final = 200
KEEP_ALIVE_S: Final = 15.0
BODIES: Final[dict[str, type[BaseModel]]] = {
    "ack": AckRequest,
    "silence": SilenceRequest,
    "unsilence": UnsilenceRequest,
    "comment": CommentRequest,
}
MAX_BODY_BYTES: Final = 16_384

Figures = Callable[[], Awaitable[dict[str, Any]]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def filters_of(query: Any) -> Filters:
    """Filters from query parameters (each repeatable: `?family=city&family=security`)."""

    def values(name: str) -> frozenset[str]:
        return frozenset(v for v in query.getall(name, []) if v)

    return Filters(
        family=values("family"), severity=values("severity"), district=values("district"),
        state=values("state"), text=query.get("q", "").strip()[:200],
    )  # fmt: skip


class Console:
    """The handlers, over one worker's board."""

    def __init__(self, feed: BoardFeed, figures: Figures) -> None:
        self.feed = feed
        self.board: Board = feed.board
        self.figures = figures
        self.streams = 0

    def _snapshot(self, now_ms: int, filters: Filters | None = None) -> dict[str, Any]:
        board = self.board
        return {
            "alerts": [entry.as_json(now_ms) for entry in board.select(filters)],
            "counts": board.counts(),
            "cursor": f"{self.feed.epoch}-{board.seq}",
        }

    async def page(self, request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(STATIC / "console.html")
        response.headers["Cache-Control"] = "no-store"
        return response

    async def alerts(self, request: web.Request) -> web.Response:
        return _json(self._snapshot(_now_ms(), filters_of(request.query)))

    async def figures_page(self, request: web.Request) -> web.Response:
        return _json(await self.figures())

    async def act(self, request: web.Request) -> web.Response:
        fingerprint, kind = request.match_info["fingerprint"], request.match_info["action"]
        body_type = BODIES.get(kind)
        if body_type is None:
            return _error(404, f"no action {kind!r}: ack, silence, unsilence or comment")
        entry = self.board.entries.get(fingerprint)
        if entry is None:
            return _error(404, f"no alert {fingerprint[:32]!r} on the board")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _error(413, f"body over {MAX_BODY_BYTES} bytes")
        raw = await request.read()
        try:
            body = body_type.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            return _error(422, f"{where}: {first['msg']}")
        now_ms = _now_ms()
        fields: dict[str, Any] = {}
        if isinstance(body, SilenceRequest):
            fields = {"until_ms": now_ms + body.duration_s * 1000, "reason": body.reason}
        elif isinstance(body, CommentRequest):
            fields = {"text": body.text}
        elif isinstance(body, AckRequest | UnsilenceRequest):
            fields = {"reason": body.reason}
        action = AlertAction(
            id=uuid.uuid4().hex, fingerprint=fingerprint, action=kind,
            user=request[USER].name, at_ms=now_ms, at=rfc3339(now_ms),
            episode_ms=entry.alert.starts_at_ms, labels=entry.alert.labels, **fields,
        )  # fmt: skip
        await self.feed.publish(action)
        return _json({"action": orjson.loads(action.to_json())}, 202)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: a snapshot, then each change (docs/CONSOLE.md)."""
        if self.streams >= MAX_STREAMS:
            return _error(503, f"this worker already serves {MAX_STREAMS} live streams")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # a proxy in front must not hold events back
            }
        )
        await response.prepare(request)
        self.streams += 1
        try:
            await self._serve(response, request.headers.get("Last-Event-ID", ""))
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client went away
        finally:
            self.streams -= 1
        return response

    async def _serve(self, response: web.StreamResponse, last_event_id: str) -> None:
        board, feed = self.board, self.feed
        epoch, _, number = last_event_id.partition("-")
        seq = int(number) if epoch == feed.epoch and number.isdigit() else -1
        changed = board.changes_since(seq) if seq >= 0 else None
        if changed is None:
            seq = await self._send_snapshot(response)
        else:
            seq = await self._send_changes(response, changed)
        while True:
            with contextlib.suppress(TimeoutError):
                async with feed.changed:
                    await asyncio.wait_for(feed.changed.wait(), KEEP_ALIVE_S)
            if board.seq == seq:
                await response.write(b": keep-alive\n\n")
                continue
            changed = board.changes_since(seq)
            if changed is None:  # this client fell behind what the board remembers
                seq = await self._send_snapshot(response)
            else:
                seq = await self._send_changes(response, changed)

    async def _send_snapshot(self, response: web.StreamResponse) -> int:
        seq = self.board.seq
        snapshot = self._snapshot(_now_ms())
        del snapshot["cursor"]
        await response.write(_event("snapshot", f"{self.feed.epoch}-{seq}", snapshot))
        return seq

    async def _send_changes(self, response: web.StreamResponse, changed: list[str]) -> int:
        board, now_ms = self.board, _now_ms()
        seq = board.seq
        event_id = f"{self.feed.epoch}-{seq}"
        parts = []
        for fingerprint in changed:
            entry = board.entries.get(fingerprint)
            if entry is None:
                parts.append(_event("removed", event_id, {"fingerprint": fingerprint}))
            else:
                parts.append(_event("alert", event_id, entry.as_json(now_ms)))
        parts.append(_event("counts", event_id, board.counts()))
        await response.write(b"".join(parts))
        return seq


def _event(name: str, event_id: str, data: Any) -> bytes:
    # orjson writes no raw newline, so the data is one `data:` line.
    return b"event: %b\nid: %b\ndata: %b\n\n" % (
        name.encode(),
        event_id.encode(),
        orjson.dumps(data),
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def install(web_app: web.Application, feed: BoardFeed, figures: Figures) -> Console:
    """Add the console's routes to an aiohttp application (before it starts)."""
    console = Console(feed, figures)
    router = web_app.router
    router.add_get("/", console.page)
    router.add_static("/static", STATIC, append_version=False)
    router.add_get("/api/alerts", console.alerts)
    router.add_get("/api/alerts/stream", console.stream)
    router.add_post("/api/alerts/{fingerprint}/{action}", console.act)
    router.add_get("/api/figures", console.figures_page)
    return console
