"""Lineage headers and the per-source high-water mark that drops replays."""

from __future__ import annotations

from streams.core.lineage import HEADER, Lineage, header, read


def test_a_header_reads_back_and_foreign_or_broken_ones_read_as_none():
    assert read(header(2, 41, 3)) == ("2", (41, 3))
    assert read(header("city/2>5", 41, 3, 1)) == ("city/2>5", (41, 3, 1))
    assert read([("other", b"x"), *header(0, 7, 0)]) == ("0", (7, 0))
    assert read(None) is None and read([]) is None
    assert read([(HEADER, b"1:not:number")]) is None and read([(HEADER, b"1")]) is None
    assert read([(HEADER, b"\xff:1")]) is None


def test_what_is_at_or_below_the_mark_of_its_source_is_a_replay():
    seen = Lineage()
    assert seen.fresh(("0", (10, 0))) and seen.fresh(("0", (10, 1))) and seen.fresh(("1", (3, 0)))
    assert not seen.fresh(("0", (10, 1))) and not seen.fresh(("0", (9, 5)))
    assert seen.fresh(("0", (11, 0)))  # the next source record
    restored = Lineage()
    restored.load(seen.dump())
    assert not restored.fresh(("1", (3, 0))) and restored.fresh(("1", (4, 0)))
