"""The rule engine's changelog, group by group: no record grows with a rule's groups."""

from __future__ import annotations

from datetime import timedelta

import orjson

from streams.core.rules.engine import RuleEngine, group_key
from streams.core.rules.plan import RuleInput
from streams.worker.changelog import Checkpointer, replay
from tests.unit.core.rules.test_engine import T0, engine, failure, feed, following

DEVICES = 20_000
MS = int(T0.timestamp() * 1000)
MINUTE = 60_000
#: Far below the broker's 1 MiB: a group's state is a few hundred bytes.
BOUND = 16_384


def reading(device: int, at_ms: int) -> RuleInput:
    return RuleInput("sensor_silent", (f"HD-AQ-{device:05d}",), at_ms, None, f"r{device}-{at_ms}")


def silent_half() -> RuleEngine:
    """20,000 devices heard at T0; half heard again at +12 min; the other half silent
    past `after` (15 min): 10,000 firing alerts."""
    made = engine()
    following(made, T0)
    for device in range(DEVICES):
        made.process(reading(device, MS + device), 0)
    following(made, T0 + timedelta(minutes=10))
    for device in range(0, DEVICES, 2):
        made.process(reading(device, MS + 12 * MINUTE), 0)
    alerts = following(made, T0 + timedelta(minutes=26))
    assert sum(a.rule == "sensor_silent" and a.state == "firing" for a in alerts) == DEVICES // 2
    assert made.pending == 0
    return made


def go_on(made: RuleEngine) -> list[bytes]:
    """The same story after the checkpoint: some silent devices speak, time passes."""
    for device in range(1, 2001, 2):
        made.process(reading(device, MS + 27 * MINUTE), 0)
    alerts = following(made, T0 + timedelta(minutes=45))
    return [alert.to_json() for alert in alerts]


def test_twenty_thousand_groups_checkpoint_in_small_records_and_restore_exactly():
    made = silent_half()
    # The layout of old, one document for the rule, would be past the record limit.
    assert len(made.evaluators["sensor_silent"].snapshot()) > 1_048_576
    records = made.take_dirty(0)
    silent = [key for key, _ in records if key.startswith("sensor_silent/")]
    assert len(silent) == DEVICES
    assert max(len(key) + len(payload or b"") for key, payload in records) < BOUND
    restored = engine()
    assert restored.restore(records) == []
    assert restored.watermark("sensor_silent") == made.watermark("sensor_silent")
    expected, got = go_on(made), go_on(restored)
    assert got == expected
    assert sum(b'"resolved"' in alert for alert in got) == 1000
    # And both write the same next checkpoint: only what changed.
    after, after_restored = made.take_dirty(0), restored.take_dirty(0)
    assert after == after_restored
    # The 10,000 heard at +12 min fire at +27 min; 1,000 of the others resolve.
    changed = [key for key, _ in after if key.startswith("sensor_silent/")]
    assert len(changed) == DEVICES // 2 + 1000


def test_a_checkpoint_writes_only_the_groups_that_changed():
    made = engine()
    following(made, T0)
    for device in range(100):
        made.process(reading(device, MS + device), 0)
    following(made, T0 + timedelta(minutes=1))
    made.take_dirty(0)
    made.process(reading(7, MS + 2 * MINUTE), 0)
    following(made, T0 + timedelta(minutes=3))
    keys = [key for key, _ in made.take_dirty(0)]
    assert [key for key in keys if key.startswith("sensor_silent")] == [
        "sensor_silent",
        'sensor_silent/["HD-AQ-00007"]',
    ]


def test_a_forgotten_group_is_written_as_a_deletion_and_replays_away():
    made = engine()
    checkpointer = Checkpointer("ioc.rules-inputs")
    log: list[tuple[bytes, bytes | None]] = []
    feed(made, "security", [failure(T0, 1)])
    log += checkpointer.records(made.take_dirty(), 1)
    key = group_key("brute_force", ("203.0.113.7",))
    assert replay("ioc.rules-inputs", log).items[key]
    # Another address an hour later: the first one's window emptied, its group is gone.
    feed(made, "security", [failure(T0 + timedelta(hours=1), 2, ip="198.51.100.1")])
    made.advance(0)
    dirty = dict(made.take_dirty())
    assert dirty[key] is None
    log += checkpointer.records(dirty.items(), 2)
    tombstones = checkpointer.records([], 3)  # the real tombstone follows
    assert (f"ioc.rules-inputs|{key}".encode(), None) in tombstones
    log += tombstones
    recovered = replay("ioc.rules-inputs", log)
    assert key not in recovered.items
    assert group_key("brute_force", ("198.51.100.1",)) in recovered.items
    again = engine()
    assert again.restore(recovered.items.items()) == []
    assert dict(again.take_dirty()) == {}  # nothing changed by restoring


def test_a_checkpoint_of_the_older_layout_is_read_and_rewritten_by_group():
    made = engine()
    events = [failure(T0 + timedelta(seconds=i), i, ip=f"203.0.113.{i % 3}") for i in range(30)]
    straight = engine()
    expected = feed(straight, "security", events)
    got = feed(made, "security", events[:12])
    # What a worker of the per-rule layout wrote: `<rule>` → the whole rule.
    older = [(name, e.snapshot()) for name, e in made.evaluators.items()]
    older += [(key, payload) for key, payload in made.take_dirty() if key.startswith("@")]
    restored = engine()
    assert restored.restore(older) == []
    rewritten = dict(restored.take_dirty())
    assert orjson.loads(rewritten["brute_force"])["format"] == 2
    assert {group_key("brute_force", (f"203.0.113.{i}",)) for i in range(3)} <= set(rewritten)
    got += feed(restored, "security", events[12:])
    assert [a.to_json() for a in got] == [a.to_json() for a in expected]


def test_a_long_group_is_named_by_its_hash_and_kept_whole_in_its_record():
    made = engine()
    device = "x" * 5000
    made.process(RuleInput("sensor_silent", (device,), MS), 0)
    [(key, payload)] = [r for r in made.take_dirty() if r[0].startswith("sensor_silent/")]
    assert key.startswith("sensor_silent/#") and len(key) < 100
    assert orjson.loads(payload)["group"] == [device]
    assert payload.count(device.encode()) == 1  # once, however many parts hold the group
    restored = engine()
    restored.restore(
        [(key, payload), ("sensor_silent", made.evaluators["sensor_silent"].rule_record())]
    )
    assert restored.evaluators["sensor_silent"].held_groups() == {(device,)}
