import tracemalloc

import orjson

from streams.core.sizing import kept


def _traced_per_item(make) -> float:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        items = [make(i) for i in range(2000)]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(items) == 2000
    return (after - before) / 2000


def test_kept_bytes_cost_their_length_not_a_buffer():
    rule_input = ["brute_force", ["SO-TTTT", "203.0.113.7"], 1_795_662_000_000, None, None]
    per_item = _traced_per_item(lambda i: kept(orjson.dumps([*rule_input, i])))
    assert per_item < 200  # 60-odd bytes of JSON plus the bytes object and list slot


def test_kept_is_an_equal_copy():
    data = orjson.dumps({"a": [1, 2, 3]})
    assert kept(data) == data and type(kept(data)) is bytes
