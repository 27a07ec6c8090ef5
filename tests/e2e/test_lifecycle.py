"""`make up`, `make down`, `make run` (python -m infra): start healthy, stop leaving nothing.

Runs the real commands with a state directory and ports of the test's own, so it never touches a
developer's `make up` or the test session's servers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from infra.local import ROOT, port_open
from tests.support import free_port, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def infra_env():
    # PostgreSQL's socket path must stay short, hence /tmp rather than pytest's tmp_path
    state = Path(tempfile.mkdtemp(prefix="ml-", dir="/tmp"))
    ports = {name: free_port() for name in ("KAFKA", "KAFKA_CONTROLLER", "PG", "HTTP", "XML")}
    env = {
        k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
    }
    env.update({f"MARKETLOG_{k}_PORT": str(v) for k, v in ports.items()})
    env.update(MARKETLOG_STATE=str(state), MARKETLOG_PARTITIONS="2")
    yield env, state, ports
    subprocess.run([sys.executable, "-m", "infra", "down"], env=env, cwd=ROOT, timeout=120)
    subprocess.run(["rm", "-rf", str(state)], check=False)


def infra(env, command: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "infra", command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def leftovers(state: Path) -> list[str]:
    """Processes still running from this state directory or its services."""
    found = subprocess.run(["pgrep", "-af", str(state)], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if "pgrep" not in line]


def test_up_is_healthy_and_idempotent_and_down_leaves_nothing(infra_env):
    env, state, ports = infra_env
    first = infra(env, "up")
    assert first.returncode == 0, first.stderr + first.stdout
    assert "Marketlog is up" in first.stdout
    assert all(port_open(port) for port in ports.values())
    again = infra(env, "up")
    assert again.returncode == 0 and "already running" in again.stdout
    stopped = infra(env, "down")
    assert stopped.returncode == 0 and "Kafka" in stopped.stdout
    assert not [p for p in ports.values() if port_open(p)]
    assert leftovers(state) == []
    assert "nothing was running" in infra(env, "down").stdout


def test_run_starts_and_ctrl_c_stops_everything(infra_env):
    env, state, ports = infra_env
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra", "run"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: len(list((state / "run").glob("*.ready"))) >= 4, 240, "every service")
        assert port_open(ports["HTTP"]) and port_open(ports["XML"])
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does to the foreground group
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not [p for p in ports.values() if port_open(p)]
    assert leftovers(state) == []
