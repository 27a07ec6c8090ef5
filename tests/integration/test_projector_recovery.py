"""Exactly once under kill -9, and a rebuild racing a live projector: nothing lost or doubled."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import threading

import pytest

from services.projector import audit, service
from testkit import history
from tests.integration.backlog import pause
from tests.integration.test_projector import (
    applied,
    contents,
    end_offsets,
    query,
    wait_caught_up,
)
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


def counts(ex: history.Market) -> dict[str, int]:
    names = [name.rsplit(".", 1)[1] for _, _, name, _ in ex.events]
    return {
        "executions": names.count("OrderFilled"),
        "trades": names.count("Trade"),
        "audit_log": sum(1 for s, _, n, _ in ex.events if s == "account" and n != history.PLACED),
    }


def assert_exactly_once(cfg, ex: history.Market) -> None:
    expected = counts(ex)
    for table, n in expected.items():
        assert query(cfg, f"SELECT count(*) FROM {table}")[0][0] == n, table
    keys = "SELECT count(DISTINCT (order_id, seq)) FROM executions"
    assert query(cfg, keys)[0][0] == expected["executions"]
    passed, lines = audit.audit(cfg.database_url)
    assert passed, lines


BATCH = 50  # small batches: many transactions for a kill to land in


def progress(cfg, ends: dict) -> tuple[int, int]:
    """(records applied, records of the log up to `ends` not applied yet), over every partition."""
    done = applied(cfg)
    return sum(done.values()), sum(end - done.get(key, 0) for key, end in ends.items())


def others_connected(cfg) -> int:
    """Sessions on the test's database other than this query's own: the projector's."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend'"  # not autovacuum
    )
    return query(cfg, sql)[0][0]


def kill_mid_backlog(cfg, proc: subprocess.Popen, reserve, after: int) -> tuple[int, int]:
    """SIGKILL the projector part-way through a backlog; return (records it applied since it
    started, records left unapplied), read once it is dead and nothing else is producing.

    Waits until it has applied at least `after` records (it is up and working), then pauses it
    (SIGSTOP, every thread stopped) and looks. Paused, it can still finish at most the one batch
    its writer is committing, so the kill is certain to leave a backlog only if more than a batch
    is left. If not (or if it catches up before applying `after`), it is resumed, the next chunk
    of the history is produced from `reserve`, and it is watched and paused again."""
    ends = end_offsets(cfg)
    since, _ = progress(cfg, ends)

    def worked_or_caught_up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the projector exited with {proc.returncode}")
        total, left = progress(cfg, ends)
        return total >= since + after or left <= BATCH

    while True:
        wait_until(worked_or_caught_up, 60, "the projector to work through the log", every=0.01)
        pause(proc)
        _, left = progress(cfg, ends)
        if left > BATCH:  # and so it applied `after`: what it has left only shrinks
            break
        proc.send_signal(signal.SIGCONT)
        chunk = next(reserve, None)
        assert chunk is not None, "the history ran out before a pause found a backlog"
        history.produce(cfg, chunk)
        ends = end_offsets(cfg)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # its sessions gone, whatever it committed is all it will ever have committed
    wait_until(lambda: others_connected(cfg) == 0, 30, "the killed projector's sessions to end")
    total, left = progress(cfg, end_offsets(cfg))
    return total - since, left


def test_kill_9_mid_run_loses_and_doubles_nothing(cfg):
    ex = history.random_history(20000, seed=13, accounts=40, symbols=4)
    encoded = history.encode(ex.events)
    size = 2000
    reserve = iter([encoded[i : i + size] for i in range(size, len(encoded), size)])
    history.produce(cfg, encoded[:size])
    proc, kills = start(cfg, batch=BATCH), []
    try:  # each kill after the projector has applied a different part of its backlog
        for kill, after in enumerate([1, 300, 900, 100, 600]):
            kills.append((after, *kill_mid_backlog(cfg, proc, reserve, after)))
            if kill == 1:
                history.produce(cfg, next(reserve))  # more arrives while it is down
            proc = start(cfg, batch=BATCH)
        for chunk in reserve:
            history.produce(cfg, chunk)
        wait_caught_up(cfg)
        stop(cfg, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # every kill landed after the projector had applied part of a backlog, before the rest
    print("kills (wait for, records applied since start, records left):", kills)
    assert len(kills) == 5, kills
    assert all(done >= after and left > 0 for after, done, left in kills), kills
    assert_exactly_once(cfg, ex)
    built = contents(cfg)
    service.rebuild(cfg)
    assert contents(cfg) == built


def test_a_rebuild_racing_a_live_projector_still_applies_everything_once(cfg):
    ex = history.random_history(6000, seed=17, accounts=30, symbols=3)
    encoded = history.encode(ex.events)
    history.produce(cfg, encoded[:3000])
    proc = start(cfg)
    try:
        wait_caught_up(cfg)
        rebuild = threading.Thread(
            target=service.rebuild, args=(cfg,), kwargs={"batch_records": 500}
        )
        rebuild.start()
        history.produce(cfg, encoded[3000:])  # the live projector keeps applying meanwhile
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
    ex = history.random_history(6000, seed=19, accounts=30, symbols=4)
    encoded = history.encode(ex.events)
    procs = [start(cfg, "0"), start(cfg, "1")]
    try:
        for i in range(0, len(encoded), 2000):
            history.produce(cfg, encoded[i : i + 2000])
        wait_caught_up(cfg)
    finally:
        for instance, proc in enumerate(procs):
            stop(cfg, proc, str(instance))
    assert_exactly_once(cfg, ex)
    built = contents(cfg)
    service.rebuild(cfg)
    assert contents(cfg) == built
