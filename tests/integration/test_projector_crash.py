"""The projection tables are UNLOGGED (migration 0004): a PostgreSQL crash empties them, their
applied offsets with them, and the projector replays the log into the same rows.

The crash tests run on a PostgreSQL cluster of their own (crashing it is the point, and the
session's cluster serves every other test), durable like `make run`'s. The crash is
``pg_ctl stop -m immediate``: every server process quits at once without a shutdown checkpoint,
as after kill -9 of the postmaster or a power cut, so the next start runs crash recovery, which
resets unlogged tables. Nothing rests on timing: the projector is paused (SIGSTOP, every thread
stopped) or not running across the crash, so the tables are certain to be as recovery left them
when the test looks.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

from infra.local import LocalPostgres, _pg_bin
from services.projector import schema
from testkit import history
from tests.integration.backlog import pause
from tests.integration.test_projector import contents, wait_caught_up
from tests.integration.test_projector_recovery import assert_exactly_once, start, stop
from tests.support import free_port, run_cli

pytestmark = pytest.mark.integration

MIGRATIONS = len(schema.migration_files())


def persistence(conn: psycopg.Connection, namespace: str) -> dict[str, str]:
    """relname -> relpersistence ('p' logged, 'u' unlogged) of the schema's tables and indexes."""
    rows = conn.execute(
        "SELECT c.relname, c.relpersistence FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'i')",
        (namespace,),
    ).fetchall()
    return dict(rows)


def assert_unlogged_but_migrations(conn: psycopg.Connection, namespace: str) -> None:
    found = persistence(conn, namespace)
    logged = {name for name, kind in found.items() if kind == "p"}
    assert logged == {"schema_migrations", "schema_migrations_pkey"}, logged
    assert set(schema.tables(conn, namespace)) <= set(found)


def test_every_projection_table_and_index_is_unlogged_but_the_migrations(database_url):
    """In the live schema and in a rebuild's side schema (the same migrations build both); a
    table a later migration adds must be created UNLOGGED too, or this fails."""
    with schema.connect(database_url) as conn:
        for namespace in (schema.LIVE, schema.REBUILD):
            schema.migrate(conn, namespace)
            assert_unlogged_but_migrations(conn, namespace)
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'audit_log'",
            (schema.LIVE,),
        ).fetchall()
        assert indexes == []  # no read uses one (migration 0004)


@pytest.fixture
def own_postgres(tmp_path) -> Iterator[LocalPostgres]:
    pg = LocalPostgres(tmp_path / "pg", free_port(), durable=True)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(pg.home, ignore_errors=True)


@pytest.fixture
def cfg(settings, own_postgres):
    return dataclasses.replace(settings, database_url=own_postgres.url)


def crash(pg: LocalPostgres) -> None:
    """Stop PostgreSQL the way a crash does, then start it again (crash recovery)."""
    subprocess.run(
        pg._as_postgres(_pg_bin("pg_ctl"), "-D", str(pg.data), "-m", "immediate", "-w", "stop"),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    assert not pg.running()
    pg.start()


def assert_emptied(cfg) -> None:
    """Every projection table empty (applied_offsets too), the logged migrations record intact."""
    with schema.connect(cfg.database_url) as conn:
        names = schema.tables(conn)
        assert "applied_offsets" in names and "orders" in names
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in names}
        assert counts == dict.fromkeys(names, 0)
        versions = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
        assert versions == MIGRATIONS


def assert_full(rows: dict[str, list[tuple]]) -> None:
    for table in ("applied_offsets", "accounts", "orders", "executions", "trades", "audit_log"):
        assert rows[table], f"{table} is empty before the crash: the test would prove nothing"


def test_a_postgresql_crash_empties_the_projection_and_the_projector_replays_it(cfg, own_postgres):
    ex = history.random_history(4000, seed=23, accounts=30, symbols=3)
    encoded = history.encode(ex.events)
    half = len(encoded) // 2
    history.produce(cfg, encoded[:half])

    # 1. a crash under a live projector (paused across it): idle, it finds its offsets gone
    #    at its next check and replays from offset zero without being restarted
    proc = start(cfg)
    try:
        wait_caught_up(cfg)
        before = contents(cfg)
        assert_full(before)
        pause(proc)
        crash(own_postgres)
        assert_emptied(cfg)
        proc.send_signal(signal.SIGCONT)
        wait_caught_up(cfg)
        assert contents(cfg) == before
        history.produce(cfg, encoded[half:])  # and it goes on from there
        wait_caught_up(cfg)
        stop(cfg, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    before = contents(cfg)

    # 2. a crash while no projector runs: the next one starts from offset zero
    crash(own_postgres)
    assert_emptied(cfg)
    proc = start(cfg)
    try:
        wait_caught_up(cfg)
        stop(cfg, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert contents(cfg) == before
    assert_exactly_once(cfg, ex)

    # 3. rebuild: the schema it swaps in is unlogged as well, so a crash empties it too, and a
    #    rebuild on the emptied tables gives the same rows again
    for _ in range(2):
        done = run_cli(cfg, "services.projector", "rebuild")
        assert done.returncode == 0, done.stderr[-2000:]
        assert contents(cfg) == before
        with schema.connect(cfg.database_url) as conn:
            assert_unlogged_but_migrations(conn, schema.LIVE)
        crash(own_postgres)
        assert_emptied(cfg)
