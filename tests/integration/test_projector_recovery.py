"""Exactly once under kill -9, and a rebuild racing a live projector: nothing lost or doubled."""

from __future__ import annotations

import dataclasses
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from services.projector import audit, service, synth
from tests.integration.test_projector import caught_up, contents, query, wait_caught_up
from tests.support import settings_env, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def cfg(settings, database_url):
    return dataclasses.replace(settings, database_url=database_url)


def start(cfg, instance: str = "0", batch: int = 300) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services.projector", "serve", "--batch-records", str(batch)],
        env=settings_env(dataclasses.replace(cfg, instance=instance)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(cfg, proc: subprocess.Popen, instance: str = "0") -> None:
    """SIGTERM once it is serving: it finishes its batch and exits cleanly."""
    ready = cfg.run_dir / f"projector-{instance}.ready"
    wait_until(lambda: ready.exists() and ready.read_text() == str(proc.pid), 30, "ready")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def counts(ex: synth.Exchange) -> dict[str, int]:
    names = [name.rsplit(".", 1)[1] for _, _, name, _ in ex.events]
    return {
        "executions": names.count("OrderFilled"),
        "trades": names.count("Trade"),
        "audit_log": sum(1 for stream, *_ in ex.events if stream == "account"),
    }


def assert_exactly_once(cfg, ex: synth.Exchange) -> None:
    expected = counts(ex)
    for table, n in expected.items():
        assert query(cfg, f"SELECT count(*) FROM {table}")[0][0] == n, table
    keys = "SELECT count(DISTINCT (order_id, seq)) FROM executions"
    assert query(cfg, keys)[0][0] == expected["executions"]
    passed, lines = audit.audit(cfg.database_url)
    assert passed, lines


def test_kill_9_mid_run_loses_and_doubles_nothing(cfg):
    rng = random.Random(3)
    ex = synth.random_history(20000, seed=13, accounts=40, symbols=4)
    encoded = synth.encode(ex.events)
    synth.produce(cfg, encoded[:12000])
    proc, behind = start(cfg, batch=50), 0  # small batches: many transactions to land in
    try:
        for kill in range(5):
            time.sleep(rng.uniform(1.2, 1.8))  # start-up, then some batches, then …
            behind += not caught_up(cfg)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            if kill == 1:
                synth.produce(cfg, encoded[12000:])  # more arrives while it is down
            proc = start(cfg, batch=50)
        wait_caught_up(cfg)
    finally:
        stop(cfg, proc)
    assert behind >= 2, "the kills should land while the projector is catching up"
    assert_exactly_once(cfg, ex)
    built = contents(cfg)
    service.rebuild(cfg)
    assert contents(cfg) == built


def test_a_rebuild_racing_a_live_projector_still_applies_everything_once(cfg):
    ex = synth.random_history(6000, seed=17, accounts=30, symbols=3)
    encoded = synth.encode(ex.events)
    synth.produce(cfg, encoded[:3000])
    proc = start(cfg)
    try:
        wait_caught_up(cfg)
        rebuild = threading.Thread(
            target=service.rebuild, args=(cfg,), kwargs={"batch_records": 500}
        )
        rebuild.start()
        synth.produce(cfg, encoded[3000:])  # the live projector keeps applying meanwhile
        rebuild.join(60)
        assert not rebuild.is_alive()
        wait_caught_up(cfg)
    finally:
        stop(cfg, proc)
    assert_exactly_once(cfg, ex)
    built = contents(cfg)
    service.rebuild(cfg)
    assert contents(cfg) == built


def test_two_instances_split_the_partitions_and_apply_everything_once(cfg):
    ex = synth.random_history(6000, seed=19, accounts=30, symbols=4)
    encoded = synth.encode(ex.events)
    procs = [start(cfg, "0"), start(cfg, "1")]
    try:
        for i in range(0, len(encoded), 2000):
            synth.produce(cfg, encoded[i : i + 2000])
        wait_caught_up(cfg)
    finally:
        for instance, proc in enumerate(procs):
            stop(cfg, proc, str(instance))
    assert_exactly_once(cfg, ex)
    built = contents(cfg)
    service.rebuild(cfg)
    assert contents(cfg) == built
