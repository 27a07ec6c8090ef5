"""The CI-sized chaos run (bench/chaos.py; `make chaos` is the long form): under load on XML, HTTP,
the private JSON-line channel and the day-trading line protocol, kill -9 of every service, a
processor paused past its session timeout, and the broker killed and brought back; then nothing
any surface's clients were told is lost or doubled and every audit holds."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bench.chaos import markdown, run
from bench.env import BenchEnv
from infra.stack import free_port

pytestmark = pytest.mark.integration


def free_pair() -> int:
    """A free port whose next one is free too (the broker's controller listens there)."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def test_a_short_chaos_run_loses_and_doubles_nothing(tmp_path, monkeypatch):
    # a broker and PostgreSQL of its own: this run kills its broker
    monkeypatch.setenv("MARKETLOG_BENCH_HOME", str(tmp_path / "chaos"))
    monkeypatch.setenv("MARKETLOG_BENCH_KAFKA_PORT", str(free_pair()))
    monkeypatch.setenv("MARKETLOG_BENCH_PG_PORT", str(free_port()))
    monkeypatch.setenv("MARKETLOG_KAFKA_JVM", "-Xms256m -Xmx512m -XX:+UseSerialGC")
    with BenchEnv(tmp_path) as env:
        result = run(env, seconds=50, fault_count=6, seed=3, rate=40)
    print(markdown(result))
    try:
        check(result)
    except AssertionError as exc:  # a CI log keeps only the failure's text: the services' too
        raise AssertionError(f"{exc}\n{log_tails(tmp_path / 'chaos' / 'logs' / 'chaos')}") from exc


def check(result: dict) -> None:
    kinds = {(f["kind"], f["target"]) for f in result["faults"]}
    assert ("broker", "kafka") in kinds and any(k == "pause" for k, _ in kinds)
    assert {t for k, t in kinds if k == "kill"} >= {"ledger", "matcher", "projector", "gateway"}
    for surface, told in result["surfaces"].items():
        assert told["told_open"] > 50, f"{surface}: the clients should trade through the faults"
        assert (told["lost"], told["duplicated"]) == (0, 0), (surface, told)
    assert not result["surfaces"]["daytrade"]["unsettled_users"], result["surfaces"]["daytrade"]
    assert result["trades"] > 50
    assert result["lost"] == 0, result
    assert result["duplicated"] == 0, result
    assert not result["stuck_on_stop"], result["stuck_on_stop"]
    assert all(result["checks"].values()), result["checks"]
    assert all(f["recovery_s"] is not None for f in result["faults"]), result["faults"]


def log_tails(logs: Path, lines: int = 15) -> str:
    """Each service's last lines, the Kafka client's own (``%4|...``) left out."""
    tails = []
    for path in sorted(logs.glob("*.log")):
        ours = [
            ln for ln in path.read_text(errors="replace").splitlines() if not ln.startswith("%")
        ]
        tails.append(f"-- {path.name}\n" + "\n".join(ours[-lines:]))
    return "\n".join(tails)
