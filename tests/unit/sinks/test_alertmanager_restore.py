"""`AlertmanagerSink.restore`: the states taken before a restart, rebuilt from the
records of `ioc.alerts` before the committed offset, and kept alive by `tick`."""

from __future__ import annotations

from models.timefmt import rfc3339
from sinks.alertmanager import AlertmanagerConfig, AlertmanagerSink
from sinks.base import SinkRecord
from tests.unit.sinks.helpers import T0, ScriptedPost, alert, record

MIN = 60_000
NOW = T0 + 30 * MIN  # the restart


class Clock:
    def __init__(self, now_ms: int = NOW) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def sink(
    post: ScriptedPost, clock: Clock, remember_s: float = 3600.0, **target: object
) -> AlertmanagerSink:
    config = AlertmanagerConfig(url="http://am:9093", **target)
    return AlertmanagerSink(
        config, remember_s=remember_s, post=post, clock=clock, random=lambda: 0.0
    )


def sent(post: ScriptedPost, call: int = -1) -> dict[str, dict]:
    """The alerts of one POST by source_ip label."""
    return {item["labels"]["source_ip"]: item for item in post.calls[call][1]}


async def test_a_firing_alert_is_kept_and_re_sent_at_the_first_tick() -> None:
    post = ScriptedPost()
    am = sink(post, Clock(), resend_s=60)
    # Fired 25 min before the restart: its only record is long before the committed offset.
    assert am.restore([(record(alert(starts_at_ms=T0), 7), T0 + 5 * MIN)]) == 1
    assert am.status.extra["alerts"] == 1 and am.status.extra["restored"] == 1
    assert await am.flush() == [] and post.calls == []  # acknowledged by the run before
    await am.tick(NOW)
    [payload] = post.calls[0][1]
    assert payload["startsAt"] == rfc3339(T0)
    assert payload["endsAt"] == rfc3339(NOW + 3 * MIN)  # valid again for 3 × resend_s
    await am.tick(NOW + 30_000)
    assert len(post.calls) == 1  # then on the usual schedule
    await am.tick(NOW + MIN)
    assert len(post.calls) == 2
    assert am.status.extra["resent"] == 2


async def test_resolved_states_within_remember_are_kept_as_resolved() -> None:
    post = ScriptedPost()
    am = sink(post, Clock(), resend_s=60, resolved_resend_s=300, remember_s=600)
    recent = alert("resolved", ends_at_ms=NOW - 2 * MIN, source__ip="10.0.0.1")
    quiet = alert("resolved", ends_at_ms=NOW - 10 * MIN, source__ip="10.0.0.2")
    gone = alert("resolved", ends_at_ms=NOW - 20 * MIN, source__ip="10.0.0.3")
    restored = am.restore(
        [
            (record(gone, 1), NOW - 20 * MIN),  # past resolved_resend_s + remember_s
            (record(quiet, 2), NOW - 10 * MIN),  # re-sends over, still remembered
            (record(recent, 3), NOW - 2 * MIN),  # still within resolved_resend_s
        ]
    )
    assert restored == 2 and am.status.extra["alerts"] == 2
    await am.tick(NOW)
    [payload] = post.calls[0][1]
    assert payload["labels"]["source_ip"] == "10.0.0.1"
    assert payload["endsAt"] == rfc3339(NOW - 2 * MIN)  # resolved, with its own end
    # A replayed firing copy of a remembered resolved alert does not bring it back.
    await am.write([record(alert(source__ip="10.0.0.2"), 4)])
    await am.flush()
    assert len(post.calls) == 1
    # The remembered one is forgotten remember_s after its re-sends ended.
    await am.tick(NOW + 6 * MIN)
    assert am.status.extra["alerts"] == 1
    await am.tick(NOW + 4 * MIN + 11 * MIN)
    assert am.status.extra["alerts"] == 0


async def test_the_latest_state_supersedes_older_ones() -> None:
    post = ScriptedPost()
    am = sink(post, Clock())
    a, b, c = "10.0.0.1", "10.0.0.2", "10.0.0.3"
    am.restore(
        [
            # a: fired, then resolved: resolved.
            (record(alert(source__ip=a), 1), NOW - 9 * MIN),
            (record(alert("resolved", ends_at_ms=NOW - 3 * MIN, source__ip=a), 2), NOW - 3 * MIN),
            # b: resolved, then an older episode's firing copy (out of order): resolved.
            (record(alert("resolved", ends_at_ms=NOW - 4 * MIN, source__ip=b), 3), NOW - 4 * MIN),
            (record(alert(starts_at_ms=T0 - MIN, source__ip=b), 4), NOW - 2 * MIN),
            # c: resolved, then a new episode fired: firing since the new start.
            (record(alert("resolved", ends_at_ms=T0 + MIN, source__ip=c), 5), T0 + MIN),
            (record(alert(starts_at_ms=T0 + 20 * MIN, source__ip=c), 6), T0 + 20 * MIN),
        ]
    )
    await am.tick(NOW)
    alerts = sent(post)
    assert alerts[a]["endsAt"] == rfc3339(NOW - 3 * MIN)
    assert alerts[b]["endsAt"] == rfc3339(NOW - 4 * MIN)
    assert alerts[c]["startsAt"] == rfc3339(T0 + 20 * MIN)
    assert alerts[c]["endsAt"] == rfc3339(NOW + 3 * MIN)


async def test_restore_never_replaces_what_the_sink_holds_and_skips_non_alerts() -> None:
    post = ScriptedPost()
    am = sink(post, Clock())
    resolved = alert("resolved", ends_at_ms=NOW - MIN)
    await am.write([record(resolved, 10)])
    await am.flush()
    junk = SinkRecord("ioc.alerts", 0, 0, None, b'{"state": "firing"}', {"state": "firing"})
    assert am.restore([(junk, NOW - MIN), (record(alert(), 9), NOW - MIN)]) == 0
    assert am.status.extra["alerts"] == 1
    # A record without a timestamp (-1) counts as taken now.
    assert am.restore([(record(alert(starts_at_ms=T0 + 25 * MIN, source__ip="x"), 11), -1)]) == 1
    await am.tick(NOW)
    assert list(sent(post)) == ["x"]  # the resolved one was sent by flush: not due yet


def test_lookback_covers_what_a_resolved_state_is_remembered_for() -> None:
    post = ScriptedPost()
    assert sink(post, Clock()).lookback_ms == 86_400_000
    am = sink(post, Clock(), remember_s=90_000.0, resolved_resend_s=300.0)
    assert am.lookback_ms == 90_300_000


async def test_restoring_part_by_part_ends_as_restoring_at_once() -> None:
    a, b = "10.0.0.1", "10.0.0.2"
    records = [
        (record(alert(source__ip=a, starts_at_ms=T0), 1), T0),  # a fired long ago …
        (record(alert(source__ip=b), 2), NOW - 9 * MIN),
        # … and resolved long ago: a later part's resolution ends the firing state held.
        (record(alert("resolved", ends_at_ms=T0 + MIN, source__ip=a), 3), T0 + MIN),
        (record(alert("resolved", ends_at_ms=NOW - 3 * MIN, source__ip=b), 4), NOW - 3 * MIN),
    ]
    whole, parts = ScriptedPost(), ScriptedPost()
    at_once = sink(whole, Clock(), resolved_resend_s=300, remember_s=60)
    in_parts = sink(parts, Clock(), resolved_resend_s=300, remember_s=60)
    at_once.restore(records)
    in_parts.restore(records[:2])
    in_parts.restore(records[2:])
    assert at_once.status.extra["alerts"] == in_parts.status.extra["alerts"] == 1
    await at_once.tick(NOW)
    await in_parts.tick(NOW)
    assert whole.calls[0][1] == parts.calls[0][1]
    assert list(sent(parts)) == [b]


def test_restore_holds_the_least_recently_produced_first_for_the_bound() -> None:
    am = sink(ScriptedPost(), Clock(), max_alerts=2)
    # Offset order per partition is not time order across partitions.
    am.restore([
        (record(alert(source__ip="new"), 1), NOW - MIN),
        (record(alert(source__ip="old"), 2), NOW - 20 * MIN),
        (record(alert(source__ip="mid"), 3), NOW - 10 * MIN),
    ])  # fmt: skip
    assert am.status.evicted == 1
    kept = {entry.alert.labels["source.ip"] for entry in am._entries.values()}
    assert kept == {"new", "mid"}
