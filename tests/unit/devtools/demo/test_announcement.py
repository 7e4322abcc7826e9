"""The console's logins are printed once, as soon as the worker is ready."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from streams.devtools.demo.traffic import Announcement, announce


def test_it_is_printed_once_when_the_worker_becomes_ready(capsys: pytest.CaptureFixture[str]):
    checks = iter([False, False, True])
    announcement = Announcement(lambda: next(checks), "console ready at http://h:1/")

    async def main() -> bool:
        stop = asyncio.Event()
        return await announce(announcement, stop, every_s=0.01)

    assert asyncio.run(main()) is True
    announcement.print()  # again: nothing more
    assert capsys.readouterr().out == "console ready at http://h:1/\n"


def test_a_run_that_ends_first_prints_it_late_or_not_at_all(capsys: pytest.CaptureFixture[str]):
    never = Announcement(lambda: False, "never")

    async def stopped() -> bool:
        stop = asyncio.Event()
        stop.set()
        return await announce(never, stop)

    assert asyncio.run(stopped()) is False
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert never.wait(worker, timeout=0.6) is False
        late = Announcement(lambda: True, "late")
        assert late.wait(worker, timeout=5) is True
    finally:
        worker.kill()
        worker.wait()
    gone = Announcement(lambda: True, "gone")
    assert gone.wait(worker, timeout=5) is False  # the worker stopped: no address to give
    assert capsys.readouterr().out == "late\n"
