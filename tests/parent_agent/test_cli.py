"""``multisigner parent-agent`` as an operator runs it: from a config file, in the
foreground, answering until SIGTERM; ``--scan-once``; config errors exit 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest
from agentkit import notify, wait_for
from prereq import needs

from multisigner_lab import Lab
from multisigner_lab.net import free_port

pytestmark = [pytest.mark.lab, needs("pdns_server", what="Debian package pdns-server")]

ZONE = "cli.test."


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.start(tmp_path_factory.mktemp("clab"), providers=1, zones=[ZONE],
                   scanner=False, unbound=False) as running:
        yield running


def write_config(lab: Lab, path: Path, port: int) -> Path:
    p0 = lab.server("p0")
    path.write_text(f"""
[state]
url = "sqlite:///{path.parent / 'agent.db'}"

[[providers]]
name = "parent"
type = "powerdns"
api_url = "{lab.parent.api_url}"
api_key = "${{PARENT_API_KEY}}"
nameservers = ["{lab.parent.nameserver}"]

[parent_agent]
zone = "test."
provider = "parent"
listen = ["127.0.0.1:{port}"]
target = "updater.test."
scan_interval = "0s"
hosts = {{ "{p0.ns_name}" = "{p0.nameserver}" }}
""")
    return path


def cli(config: Path, *args: str, **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PARENT_API_KEY": kw.pop("key", None) or ""}
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--config", str(config),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_serves_until_sigterm(lab: Lab, tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    config = write_config(lab, tmp_path / "agent.toml", port)
    proc = cli(config, "parent-agent", key=lab.parent.api_key)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"listening on 127.0.0.1:{port}" in line, proc.stderr.read() if proc.stderr else ""
        assert notify(port, ZONE, "CDS").rcode() == dns.rcode.NOERROR
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    history = subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config", str(config),
                              "history", "test."], capture_output=True, text=True, check=False,
                             env={**os.environ, "PARENT_API_KEY": "x"})
    assert history.returncode == 0 and "notify" in history.stdout, history


def test_scan_once(lab: Lab, tmp_path: Path) -> None:
    config = write_config(lab, tmp_path / "agent.toml", free_port("127.0.0.1"))
    proc = cli(config, "parent-agent", "--scan-once", key=lab.parent.api_key)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"{ZONE} CDS=ignored CSYNC=ignored" in out


def test_config_errors_exit_2(lab: Lab, tmp_path: Path) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text('[state]\nurl = "sqlite:///x.db"\n')
    proc = cli(plain, "parent-agent")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "no [parent_agent] table" in err
    bad = write_config(lab, tmp_path / "bad.toml", free_port("127.0.0.1"))
    bad.write_text(bad.read_text().replace('provider = "parent"', 'provider = "nope"'))
    proc = cli(bad, "parent-agent", key="x")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "parent_agent.provider" in err
    # a port already taken: exit 1 with the reason, no traceback
    busy = free_port("127.0.0.1")
    config = write_config(lab, tmp_path / "busy.toml", busy)
    first = cli(config, "parent-agent", key=lab.parent.api_key)
    try:
        assert first.stdout is not None and "listening" in first.stdout.readline()
        second = cli(config, "parent-agent", key=lab.parent.api_key)
        _, err = second.communicate(timeout=30)
        assert second.returncode == 1 and "cannot listen" in err and "Traceback" not in err
    finally:
        first.terminate()
        first.wait(15)
    wait_for(lambda: first.poll() is not None, 5, "first agent stopped")
    time.sleep(0)
