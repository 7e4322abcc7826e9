from streams.worker.changelog import Checkpointer, Replay, replay

TOPIC = "ioc.city.validated"


def test_state_and_offset_come_back_from_complete_checkpoints():
    writer = Checkpointer(TOPIC)
    log = writer.records([("w1", b'{"n":1}'), ("w2", b'{"n":2}')], next_offset=10)
    log += writer.records([("w1", b'{"n":3}')], next_offset=25)
    recovered = replay(TOPIC, log)
    assert recovered.offset == 25 and recovered.seq == 2
    assert recovered.items == {"w1": b'{"n":3}', "w2": b'{"n":2}'}


def test_a_checkpoint_cut_short_by_a_crash_is_ignored():
    writer = Checkpointer(TOPIC)
    log = writer.records([("w1", b"[1]"), ("w2", b"[2]")], next_offset=10)
    half_written = writer.records([("w1", b"[100]"), ("w2", b"[200]")], next_offset=99)[:1]
    recovered = replay(TOPIC, log + half_written)
    assert recovered.offset == 10
    assert recovered.items == {"w1": b"[1]", "w2": b"[2]"}


def test_deleted_state_is_tombstoned_at_the_next_checkpoint():
    writer = Checkpointer(TOPIC)
    first = writer.records([("w1", b"[1]")], next_offset=1)
    second = writer.records([("w1", None)], next_offset=2)
    third = writer.records([], next_offset=3)
    assert (b"ioc.city.validated|w1", None) in third  # a real Kafka tombstone now
    assert replay(TOPIC, first + second).items == {}
    assert replay(TOPIC, first + second + third).items == {}
    # After compaction only the tombstone (or nothing) is left for w1: still gone.
    compacted = [record for record in first + second + third if record[0].endswith(b"@checkpoint")]
    assert replay(TOPIC, compacted[-1:]).offset == 3


def test_other_topics_in_the_same_partition_are_ignored():
    city = Checkpointer(TOPIC).records([("w", b"[1]")], next_offset=5)
    security = Checkpointer("ioc.security.validated").records([("w", b"[9]")], next_offset=7)
    recovered = replay(TOPIC, security + city + security)
    assert recovered.items == {"w": b"[1]"} and recovered.offset == 5


def test_sequence_continues_after_recovery():
    writer = Checkpointer(TOPIC)
    log = writer.records([("w", b"[1]")], next_offset=5)
    resumed = Checkpointer(TOPIC, replay(TOPIC, log).seq)
    log += resumed.records([("w", b"[2]")], next_offset=6)
    assert replay(TOPIC, log).items == {"w": b"[2]"}


def test_a_log_fed_in_batches_rebuilds_every_topic_of_the_partition_at_once():
    city, security = Checkpointer(TOPIC), Checkpointer("ioc.security.validated")
    log = city.records([("w1", b"[1]"), ("w2", b"[2]")], next_offset=10)
    log += security.records([("w", b"[9]")], next_offset=7)
    log += city.records([("w1", b"[3]"), ("w2", None)], next_offset=20)
    log += city.records([("w1", b"[4]")], next_offset=30)[:1]  # cut short by a crash
    rebuilt = Replay([TOPIC, "ioc.security.validated"])
    for start in range(0, len(log), 2):  # as a stream delivers it: batch by batch
        rebuilt.feed(log[start : start + 2])
    assert rebuilt.recovered[TOPIC] == replay(TOPIC, log)
    assert rebuilt.recovered[TOPIC].items == {"w1": b"[3]"}
    assert rebuilt.recovered[TOPIC].offset == 20
    assert rebuilt.recovered["ioc.security.validated"].items == {"w": b"[9]"}


def test_the_first_checkpoint_after_a_recovery_undoes_the_one_cut_short():
    writer = Checkpointer(TOPIC)
    log = writer.records([("w1", b"[1]"), ("w2", b"[2]")], next_offset=10)
    # State from offset 99 written, then the crash: no checkpoint record.
    log += writer.records([("w1", b"[100]"), ("w3", b"[300]"), ("w2", b"[200]")], 99)[:2]
    recovered = replay(TOPIC, log)
    assert recovered.items == {"w1": b"[1]", "w2": b"[2]"}
    assert recovered.abandoned == {"w1": b"[1]", "w3": None}
    resumed = Checkpointer(TOPIC, recovered.seq, recovered.abandoned)
    log += resumed.records([("w2", b"[20]")], next_offset=12)
    # Not w1 and w3 of offset 99 adopted with offset 12: both written again as recovered.
    again = replay(TOPIC, log)
    assert again.items == {"w1": b"[1]", "w2": b"[20]"} and again.offset == 12
    assert again.abandoned == {}
    # Written once: w3's deletion becomes a tombstone at the next checkpoint, as any.
    after = resumed.records([("w1", b"[2]")], next_offset=13)
    assert (f"{TOPIC}|w3".encode(), None) in after
    assert [key for key, _ in after].count(f"{TOPIC}|w1".encode()) == 1
    assert replay(TOPIC, log + after).items == {"w1": b"[2]", "w2": b"[20]"}


def test_what_changed_since_the_recovery_is_written_as_it_is_now():
    log = Checkpointer(TOPIC).records([("w", b"[1]")], next_offset=1)
    log += Checkpointer(TOPIC, 1).records([("w", b"[5]")], next_offset=5)[:1]
    recovered = replay(TOPIC, log)
    resumed = Checkpointer(TOPIC, recovered.seq, recovered.abandoned)
    records = resumed.records([("w", None)], next_offset=3)  # deleted since the recovery
    assert [key for key, _ in records].count(f"{TOPIC}|w".encode()) == 1
    assert "w" not in replay(TOPIC, log + records).items
