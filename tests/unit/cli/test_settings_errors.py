from __future__ import annotations

import pytest

from streams.cli import main


def test_invalid_settings_are_reported_without_their_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IOC_SINKS__TIMESERIES__URL", "http://u:pa55@vm/x/SECRETTOKEN?token=abc")
    assert main(["topics"]) == 2
    err = capsys.readouterr().err
    assert "sinks.timeseries.url: Value error, put credentials" in err
    assert "pa55" not in err and "SECRETTOKEN" not in err and "abc" not in err
