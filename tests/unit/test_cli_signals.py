"""Ctrl-C and SIGTERM stop a command promptly, also in the middle of a provider API
request (each retried on timeout), and say which signal stopped it.

Why: twice in CI an interrupted CLI (SIGINT during a provider request or a parent wait)
did not exit within 10-15 s; a stack dump showed its event loop idle, i.e. the
cancellation had been absorbed on the way. The CLI now repeats the cancellation every
second until the run ends. That absorption did not reproduce here on demand, so this test
checks the prompt exit and the message, not the repeat itself.

The provider API is a loopback socket that accepts and never answers, so a request is in
flight when the signal comes. No lab, no network."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

MULTISIGNER = Path(sys.executable).parent / "multisigner"


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()


def config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "ms.toml"
    path.write_text(f"""
[state]
url = "sqlite:///{tmp_path / 'ms.db'}"

[[providers]]
name = "p0"
type = "powerdns"
api_url = "http://127.0.0.1:{port}"
api_key = "x"
nameservers = ["127.0.0.1:9"]
timeout = "3s"

[[zones]]
name = "example.test."
model = 2
signers = ["p0"]

[zones.parent]
type = "cds-scan"
nameservers = ["127.0.0.1:9"]
""")
    return path


@pytest.mark.parametrize(("sig", "after"), [(signal.SIGINT, 1.5), (signal.SIGINT, 3.4),
                                            (signal.SIGTERM, 2.2)])
def test_a_signal_stops_a_command_waiting_on_a_provider_api(
    tmp_path: Path, blackhole: int, sig: signal.Signals, after: float
) -> None:
    cfg = config(tmp_path, blackhole)
    child = subprocess.Popen([str(MULTISIGNER), "--config", str(cfg), "check"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(after)  # the first request (3 s timeout) or its retry is in flight
        assert child.poll() is None, child.communicate()
        sent = time.monotonic()
        child.send_signal(sig)
        _, err = child.communicate(timeout=20)
        took = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    # generous for a loaded CI box; the bug made it 5-8 s, the retries' remaining time
    assert took < 2.5, f"exited {took:.1f} s after {sig.name}: {err.decode()}"
    assert child.returncode == 1
    assert f"interrupted by {sig.name}" in err.decode(), err.decode()
    assert "Traceback" not in err.decode()
