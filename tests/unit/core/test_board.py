"""The console's board: the same picture whatever order alerts and actions arrive in."""

from __future__ import annotations

import random
import uuid

import pytest

from models.actions import AlertAction
from models.alerts import Alert, Evidence, fingerprint
from streams.core.board import MAX_CHANGES, Board, Filters

NOW = 1_795_662_000_000
MIN = 60_000
FAMILIES = {"brute_force": "security", "aqi_poor": "city", "overdue_backlog": "services"}


def alert(
    rule: str = "brute_force",
    state: str = "firing",
    starts: int = NOW,
    flapping: bool = False,
    **labels: str,
) -> Alert:
    names = {"alertname": rule, "severity": "warning", "team": "soc", **labels}
    return Alert(
        fingerprint=fingerprint(names),
        state=state,  # type: ignore[arg-type]
        starts_at_ms=starts,
        ends_at_ms=None if state == "firing" else starts + MIN,
        labels=names,
        annotations={"summary_vi": f"Cảnh báo {rule}", "summary_en": f"Alert {rule}"},
        kind="count",
        flapping=flapping,
        evidence=Evidence(value=12, threshold=10, event_ids=("e-1",), count=12),
    )


def action(target: Alert, kind: str, at: int, **fields: object) -> AlertAction:
    extra: dict[str, object] = {"episode_ms": target.starts_at_ms} if kind == "ack" else {}
    if kind == "silence":
        extra |= {"until_ms": at + 60 * MIN, "reason": "maintenance"}
    if kind == "comment":
        extra["text"] = "on it"
    return AlertAction(
        id=uuid.uuid4().hex, fingerprint=target.fingerprint, action=kind,  # type: ignore[arg-type]
        user="lan", at_ms=at, **(extra | fields),  # type: ignore[arg-type]
    )  # fmt: skip


def board(**options: int) -> Board:
    return Board(FAMILIES, {"brute_force": ["team"]}, **options)


def picture(made: Board, now: int) -> dict[str, object]:
    return {e.alert.fingerprint: e.as_json(now) for e in made.select()}


def test_an_acknowledgement_holds_for_its_episode_only():
    made = board()
    first = alert(**{"source.ip": "203.0.113.7"})
    made.apply_alert(first, NOW, NOW)
    made.apply_action(action(first, "ack", NOW + 1000), NOW + 1000)
    [entry] = made.select()
    assert (entry.state, entry.as_json(NOW)["acked_by"]) == ("acknowledged", "lan")
    assert entry.group == {"source.ip": "203.0.113.7"}  # not alertname, severity, team
    resolved = alert(state="resolved", **{"source.ip": "203.0.113.7"})
    made.apply_alert(resolved, NOW + 2000, NOW + 2000)
    again = alert(starts=NOW + 10 * MIN, **{"source.ip": "203.0.113.7"})
    made.apply_alert(again, NOW + 3000, NOW + 3000)
    [entry] = made.select()
    assert entry.state == "firing" and entry.as_json(NOW)["acked_by"] is None


def test_a_silence_holds_until_it_ends_or_an_unsilence_after_it():
    made = board()
    target = alert()
    made.apply_alert(target, NOW, NOW)
    silence = action(target, "silence", NOW + 1000)
    made.apply_action(silence, NOW + 1000)
    assert made.silenced(target.fingerprint, NOW + 2000)
    assert made.select()[0].state == "silenced"
    made.tick(NOW + 61 * MIN)  # past until_ms
    assert not made.silenced(target.fingerprint, NOW + 61 * MIN)
    assert made.select()[0].state == "firing"
    assert made.select()[0].changed_ms == silence.until_ms  # when it ended, not when noticed
    # A silence, then an unsilence: over. An unsilence read before the silence it
    # ends (another partition's order) ends it too.
    later = action(target, "silence", NOW + 70 * MIN)
    ended = action(target, "unsilence", NOW + 71 * MIN)
    for order in ([later, ended], [ended, later]):
        fresh = board()
        fresh.apply_alert(target, NOW, NOW)
        for item in order:
            fresh.apply_action(item, NOW + 72 * MIN)
        assert not fresh.silenced(target.fingerprint, NOW + 72 * MIN)


def test_actions_read_before_their_alert_wait_for_it():
    made = board()
    target = alert()
    made.apply_action(action(target, "silence", NOW), NOW)
    assert made.select() == [] and made.silenced(target.fingerprint, NOW + 1)
    made.apply_alert(target, NOW, NOW + 1)
    assert made.select()[0].state == "silenced"


def test_a_replayed_action_or_alert_changes_nothing():
    made = board()
    target = alert()
    comment = action(target, "comment", NOW + 5)
    assert made.apply_alert(target, NOW, NOW)
    assert made.apply_action(comment, NOW + 5)
    seq = made.seq
    assert not made.apply_alert(target, NOW, NOW + 6)
    assert not made.apply_action(comment, NOW + 6)
    assert made.seq == seq and len(made.select()[0].as_json(NOW)["comments"]) == 1


def test_an_older_episode_read_after_a_newer_one_is_ignored():
    made = board()
    newer, older = alert(starts=NOW + MIN), alert(starts=NOW, state="resolved")
    made.apply_alert(newer, NOW, NOW)
    assert not made.apply_alert(older, NOW, NOW)
    assert made.select()[0].alert == newer


@pytest.mark.parametrize("seed", range(30))
def test_any_arrival_order_gives_the_same_board(seed: int):
    rng = random.Random(seed)
    alerts: list[Alert] = []
    actions: list[AlertAction] = []
    for n in range(12):
        ip = f"203.0.113.{n}"
        episode = alert(starts=NOW + n * MIN, **{"source.ip": ip})
        alerts.append(episode)
        at = NOW + n * MIN + 1000
        for kind in rng.sample(["ack", "silence", "unsilence", "comment", "comment"], 3):
            at += rng.randrange(1, 5000)
            actions.append(action(episode, kind, at))
        if rng.random() < 0.5:
            alerts.append(alert(state="resolved", starts=NOW + n * MIN, **{"source.ip": ip}))
    now = NOW + 20 * MIN

    def fold(records: list[Alert | AlertAction]) -> dict[str, object]:
        made = board(resolved_keep_ms=10**12)
        for record in records:
            if isinstance(record, Alert):
                made.apply_alert(record, record.starts_at_ms, now)
            else:
                made.apply_action(record, now)
        made.tick(now)
        return picture(made, now)

    expected = fold([*alerts, *actions])
    for _ in range(5):
        # One fingerprint's alerts keep their order (one partition), as do its actions;
        # the two topics and the fingerprints interleave at random.
        streams = [list(alerts), list(actions)]
        merged: list[Alert | AlertAction] = []
        while any(streams):
            stream = rng.choice([s for s in streams if s])
            merged.append(stream.pop(0))
        assert fold(merged) == expected


def test_resolved_alerts_stay_dimmed_for_a_while_then_leave():
    made = board(resolved_keep_ms=15 * MIN)
    gone = alert(state="resolved")
    made.apply_alert(gone, NOW, NOW)
    assert made.counts()["state"] == {}
    assert made.tick(NOW + 14 * MIN) == []
    assert made.tick(NOW + 15 * MIN) == [gone.fingerprint] and made.select() == []
    # A worker starting later reads the old resolution as old: gone at its first tick.
    late = board(resolved_keep_ms=15 * MIN)
    late.apply_alert(gone, NOW, NOW + 60 * MIN)
    assert late.tick(NOW + 60 * MIN) == [gone.fingerprint]


def test_counts_and_filters():
    made = board()
    made.apply_alert(alert(**{"source.ip": "203.0.113.7"}), NOW, NOW)
    aqi = alert("aqi_poor", areaServed="Hải Châu", refDevice="HD-AQ-001")
    made.apply_alert(aqi, NOW + 1, NOW + 1)
    assert made.counts()["family"] == {"security": 1, "city": 1}
    assert [e.alert for e in made.select(Filters(district=frozenset({"Hải Châu"})))] == [aqi]
    assert [e.alert for e in made.select(Filters(family=frozenset({"city"})))] == [aqi]
    assert [e.alert for e in made.select(Filters(text="hd-aq"))] == [aqi]
    assert [e.alert for e in made.select(Filters(text="ALERT AQI"))] == [aqi]
    assert made.select(Filters(severity=frozenset({"critical"}))) == []


def test_changes_since_a_cursor_and_when_a_snapshot_is_needed():
    made = board()
    first, second = alert(**{"source.ip": "a"}), alert(**{"source.ip": "b"})
    made.apply_alert(first, NOW, NOW)
    cursor = made.seq
    made.apply_alert(second, NOW, NOW)
    made.apply_action(action(first, "comment", NOW + 1), NOW + 1)
    assert made.changes_since(cursor) == [second.fingerprint, first.fingerprint]
    assert made.changes_since(made.seq) == []
    assert made.changes_since(made.seq + 1) is None  # another worker's cursor
    for n in range(MAX_CHANGES):
        made.apply_action(action(first, "comment", NOW + 10 + n), NOW)
    assert made.changes_since(cursor) is None  # forgotten: send a snapshot


def test_past_the_limit_the_oldest_resolved_leave_first():
    made = board(max_alerts=100)
    for n in range(100):
        state = "resolved" if n % 2 else "firing"
        made.apply_alert(alert(state=state, **{"source.ip": f"ip{n}"}), NOW + n, NOW)
    newest = alert(**{"source.ip": "newest"})
    made.apply_alert(newest, NOW + 500, NOW)
    assert len(made.entries) == 100 and made.evicted == 1
    assert alert(state="resolved", **{"source.ip": "ip1"}).fingerprint not in made.entries
    assert newest.fingerprint in made.entries
