"""Stages whose output mixes partitions read them merged by record timestamp."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from streams.worker.stages.base import merge_by_timestamp

A, B, C = (TopicPartition("t", n) for n in range(3))


@dataclass(frozen=True)
class Record:
    offset: int
    timestamp: int
    headers: tuple[tuple[str, bytes], ...] = ()  # aiokafka's: progress records have one


def records(*timestamps: int) -> list[Record]:
    return [Record(offset, t) for offset, t in enumerate(timestamps)]


def test_partitions_are_interleaved_in_time_as_runs():
    # A holds hours of history in one fetch; B and C the same hours.
    runs = merge_by_timestamp({A: records(1, 2, 3, 7), B: records(4, 5), C: records(6)})
    assert [(tp.partition, [r.timestamp for r in rs]) for tp, rs in runs] == [
        (0, [1, 2, 3]),
        (1, [4, 5]),
        (2, [6]),
        (0, [7]),
    ]


@given(st.dictionaries(st.sampled_from([A, B, C]), st.lists(st.integers(0, 50), max_size=20)))
def test_every_record_once_and_each_partition_in_offset_order(stamps):
    batches = {tp: records(*ts) for tp, ts in stamps.items()}
    runs = merge_by_timestamp(batches)
    for tp, batch in batches.items():
        merged = [r for run_tp, rs in runs if run_tp == tp for r in rs]
        assert merged == batch  # nothing lost or repeated, offsets in order
    assert all(rs for _, rs in runs)
