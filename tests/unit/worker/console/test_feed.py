"""The console's feed folds what it can and counts the rest: no record stops it."""

from __future__ import annotations

from dataclasses import dataclass

from streams.core.board import Board
from streams.worker.console.feed import BoardFeed
from streams.worker.settings import Settings
from streams.worker.topics import ALERT_ACTIONS, ALERTS


@dataclass
class Record:
    value: bytes | None
    timestamp: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


def test_unreadable_records_of_either_topic_are_counted_and_skipped():
    board = Board({})
    feed = BoardFeed(Settings(_env_file=None), board)
    for topic, value in [
        (ALERTS, b"{not json"), (ALERTS, None), (ALERTS, b"[]"), (ALERTS, b'{"state": 1}'),
        (ALERT_ACTIONS, b'{"action": "ack"}'), (ALERT_ACTIONS, b"\xff"),
    ]:  # fmt: skip
        feed._fold(topic, Record(value), 0)
    assert feed.unreadable == 6 and board.entries == {}
    # A progress record on ioc.alerts is not an alert, and not an error either.
    feed._fold(ALERTS, Record(b"{}", headers=(("ioc-progress", b"1"),)), 0)
    assert feed.unreadable == 6
