"""Stage state in a compacted Kafka topic, checkpointed together with input offsets.

Faust's tables write one changelog record per update and recover up to an end
offset that some brokers report wrongly (docs/BROKERS.md). Stages here keep state in
memory and write only what changed, once per checkpoint:

    key   b"<input topic>|<state key>"   value  orjson [seq, payload or null]
    key   b"<input topic>|@checkpoint"   value  orjson [seq, next input offset]

All records for input partition (topic, p) go to changelog partition p, state first
and the checkpoint record last; Kafka keeps their order. Only after the producer is
flushed are the input offsets committed to the consumer group. Recovery applies, per
key, the last value written at or before the last checkpoint record: the records of a
checkpoint cut short by a crash are ignored, and the values they overwrote are still
in the log because the topic keeps records `min.compaction.lag.ms` before compacting.
The first checkpoint after a recovery writes those keys again, as recovered
(`Recovered.abandoned`): its checkpoint record would otherwise adopt them too.
A state deleted at checkpoint n (payload null) is tombstoned for real (Kafka value
None) at checkpoint n + 1, so compaction eventually drops dead keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.core.sizing import kept

__all__ = [
    "CHANGELOG_CONFIG",
    "Checkpointer",
    "Recovered",
    "Replay",
    "read_to_end",
    "replay",
    "stream",
]

CHECKPOINT = "@checkpoint"

#: Compacted, and never compacted sooner than an hour: recovery may need the value a
#: half-written checkpoint overwrote.
CHANGELOG_CONFIG = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": str(3600 * 1000),
    "retention.ms": "-1",
}


@dataclass
class Recovered:
    """A partition's state as of its last complete checkpoint."""

    seq: int = 0
    offset: int | None = None  # next input offset to read; None: never checkpointed
    items: dict[str, bytes] = field(default_factory=dict)  # state key → payload
    #: The keys a checkpoint cut short by a crash wrote after the last complete one, with
    #: what that one holds for them (None: nothing). The next checkpoint must write them
    #: again (`Checkpointer`): else its checkpoint record would adopt those values too,
    #: state from further on than the offset it saves.
    abandoned: dict[str, bytes | None] = field(default_factory=dict)


class Replay:
    """Rebuilds the state of the input topics that share one changelog partition, fed
    its records in log order, a batch at a time (`stream`): nothing but the state itself
    and one unfinished checkpoint's records is held, however long the log."""

    def __init__(self, topics: Iterable[str]) -> None:
        self._recovered: dict[str, Recovered] = {topic: Recovered() for topic in topics}
        self._prefixes = {topic.encode() + b"|": topic for topic in self._recovered}
        #: Per topic, what was written after the last checkpoint record seen so far.
        self._pending: dict[str, dict[str, bytes | None]] = {t: {} for t in self._recovered}

    @property
    def recovered(self) -> dict[str, Recovered]:
        """Per topic, its state as of the records fed so far."""
        for topic, recovered in self._recovered.items():
            items = recovered.items
            recovered.abandoned = {name: items.get(name) for name in self._pending[topic]}
        return self._recovered

    def feed(self, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        prefixes = self._prefixes
        for key, value in records:
            bar = key.find(b"|")
            topic = prefixes.get(key[: bar + 1]) if bar >= 0 else None
            if topic is None:
                continue  # an input topic this worker was not assigned
            recovered, pending = self._recovered[topic], self._pending[topic]
            name = key[bar + 1 :].decode()
            if value is None:  # a real tombstone follows a committed deletion
                recovered.items.pop(name, None)
                pending.pop(name, None)
                continue
            seq, payload = orjson.loads(value)
            if name == CHECKPOINT:
                for pending_name, pending_payload in pending.items():
                    if pending_payload is None:
                        recovered.items.pop(pending_name, None)
                    else:
                        recovered.items[pending_name] = pending_payload
                pending.clear()
                recovered.seq, recovered.offset = seq, payload
            else:
                pending[name] = None if payload is None else kept(orjson.dumps(payload))


def replay(topic: str, records: Iterable[tuple[bytes, bytes | None]]) -> Recovered:
    """Rebuild one input partition's state from its changelog records, in log order."""
    rebuilt = Replay([topic])
    rebuilt.feed(records)
    return rebuilt.recovered[topic]


class Checkpointer:
    """The changelog records of successive checkpoints of one input partition.

    `abandoned` (`Recovered.abandoned`): what a checkpoint cut short by a crash wrote
    after the one recovered, to write again at the first checkpoint, as the recovered
    state has it, unless the state changed since (then it is dirty anyway). Replay applies
    everything written before a checkpoint record, so without this the first checkpoint
    after a recovery would also adopt the values of the one cut short: state from further
    on than its offset (inputs applied twice, a lineage that drops inputs never applied),
    for good once compaction has removed the values they overwrote."""

    def __init__(
        self, topic: str, seq: int = 0, abandoned: dict[str, bytes | None] | None = None
    ) -> None:
        self._prefix = topic + "|"
        self.seq = seq
        self._deleted: list[str] = []  # deleted at the previous checkpoint
        self._abandoned = dict(abandoned or {})

    def records(
        self, dirty: Iterable[tuple[str, bytes | None]], next_offset: int
    ) -> list[tuple[bytes, bytes | None]]:
        self.seq += 1
        seq = self.seq
        out: list[tuple[bytes, bytes | None]] = [
            ((self._prefix + name).encode(), None) for name in self._deleted
        ]
        deleted = []
        dirty = list(dirty)
        if self._abandoned:
            written = {name for name, _ in dirty}
            dirty[:0] = [(n, p) for n, p in self._abandoned.items() if n not in written]
            self._abandoned = {}
        for name, payload in dirty:
            key = (self._prefix + name).encode()
            if payload is None:
                deleted.append(name)
                out.append((key, b"[%d,null]" % seq))
            else:
                out.append((key, b"[%d," % seq + payload + b"]"))
        out.append(((self._prefix + CHECKPOINT).encode(), b"[%d,%d]" % (seq, next_offset)))
        self._deleted = deleted
        return out


async def read_to_end(
    options: dict[str, Any], topic: str, partition: int, idle_rounds: int = 3
) -> list[tuple[bytes, bytes | None]]:
    """Every record of one partition (for tests and tools; recovery streams)."""
    return [record async for batch in stream(options, topic, partition, idle_rounds)
            for record in batch]  # fmt: skip


async def stream(
    options: dict[str, Any], topic: str, partition: int, idle_rounds: int = 3
) -> AsyncIterator[list[tuple[bytes, bytes | None]]]:
    """The records of one partition in batches, up to the high watermark of the fetch
    responses — not ListOffsets, which some brokers answer wrongly."""
    consumer = AIOKafkaConsumer(
        **options,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        isolation_level="read_uncommitted",
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        empty_rounds = 0
        while True:
            batch = await consumer.getmany(tp, timeout_ms=200, max_records=10_000)
            fetched = batch.get(tp, [])
            if fetched:
                yield [(r.key or b"", r.value) for r in fetched]
            highwater = consumer.highwater(tp)
            position = await consumer.position(tp)
            if highwater is not None and position >= highwater:
                return
            empty_rounds = 0 if fetched else empty_rounds + 1
            if highwater is None and empty_rounds >= idle_rounds:
                # No fetch response has carried a high watermark: the partition is empty.
                return
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
