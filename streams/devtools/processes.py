"""Child processes that never outlive the process that started them, and the free
loopback ports they listen on."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

__all__ = ["free_port", "spawn", "stop"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Linux: the kernel sends SIGTERM to the child when its parent dies, even by
    # SIGKILL, so an interrupted demo or test run leaves no broker or worker behind.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(command: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start a child in its own session (a terminal's Ctrl-C reaches only the parent,
    which then stops the children in order) that dies with its parent."""
    # The kernel signals the child when the *thread* that forked it exits, not the
    # process: a server started from a worker thread (asyncio.to_thread) would die with
    # that thread, so only children of the main thread get the signal.
    if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread():
        options.setdefault("preexec_fn", _die_with_parent)
    return subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL, **options)


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
