"""Summary templates: plain named placeholders only."""

from __future__ import annotations

import pytest

from models.templates import placeholders


def test_placeholders():
    assert placeholders("{source.ip} {value} {source.ip} {@timestamp}") == [
        "source.ip",
        "value",
        "@timestamp",
    ]
    assert placeholders("no placeholders") == []
    with pytest.raises(ValueError, match="not a plain placeholder"):
        placeholders("{value:.2f}")
    with pytest.raises(ValueError, match="unbalanced brace"):
        placeholders("a } b")
