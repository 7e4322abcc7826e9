"""`ioc demo` as a user runs it: everything starts, counts, and stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import orjson
import pytest

from streams.broker import free_port, kafka_answers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def demo_env(tmp_path) -> tuple[dict[str, str], int, int]:
    broker_port, web_port = free_port(), free_port()
    env = {
        **os.environ,
        "IOC_BROKER__PORT": str(broker_port),
        "IOC_WEB__PORT": str(web_port),
        "IOC_DATA_DIR": str(tmp_path / "data"),
    }
    return env, broker_port, web_port


def web_answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).close()
    except (urllib.error.URLError, OSError):
        return False
    return True


def test_demo_counts_every_family_and_dead_letters_then_stops(tmp_path):
    env, broker_port, web_port = demo_env(tmp_path)
    manifest = tmp_path / "manifest.json"
    command = [
        sys.executable,
        "-m",
        "streams.cli",
        "demo",
        "--duration",
        "25",
        "--rate",
        "300",
        "--bad-share",
        "0.05",
        "--manifest",
        str(manifest),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    for family in ("city", "services", "security"):
        assert f"ioc_ingest_events_accepted_total{{family={family}}}" in result.stdout
    assert "ioc_ingest_events_rejected_total{error=json" in result.stdout
    assert "ioc_ingest_events_rejected_total{error=schema" in result.stdout
    assert orjson.loads(manifest.read_bytes())["incidents"]
    assert not kafka_answers("127.0.0.1", broker_port)
    assert not web_answers(web_port)


def test_ctrl_c_stops_the_whole_tree(tmp_path):
    env, broker_port, web_port = demo_env(tmp_path)
    demo = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "demo", "--rate", "100"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not web_answers(web_port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert web_answers(web_port) and kafka_answers("127.0.0.1", broker_port)
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=90)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, output
    assert b"stopped the worker and the broker" in output
    assert not kafka_answers("127.0.0.1", broker_port)
    assert not web_answers(web_port)
