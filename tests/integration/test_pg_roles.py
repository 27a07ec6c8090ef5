"""Who may connect to PostgreSQL (docs/reliability.md): a cluster of this module's own, made the
way the project made clusters before the roles (trust, everything owned by `postgres`) and left
running, then started by LocalPostgres, which must upgrade it in place. Then: TCP wants the right
SCRAM password; the gateway's role only reads; the projector's writes rows but changes no schema
and creates no role; a rebuild's schema and a test's own database carry the same grants; the
password files are 0600 in a 0700 directory and no password reaches the server's log.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from infra.local import MIGRATOR, ROLES, LocalPostgres, _pg_bin, grant_roles, with_database
from services.projector import schema
from tests.support import free_port

NO_RIGHT = errors.InsufficientPrivilege


def old_style_cluster(home: Path, port: int) -> None:
    """initdb with trust, started, the projection migrated by the superuser: the layout of a
    state directory from before the roles, running."""
    home.mkdir(parents=True)
    pg = LocalPostgres(home, port)
    pg._own()
    as_pg = pg._as_postgres
    subprocess.run(
        as_pg(_pg_bin("initdb"), "-D", str(pg.data), "-U", "postgres", "-A", "trust", "--no-sync"),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {home} -c fsync=off"
    log = str(home / "postgres.log")
    subprocess.run(
        as_pg(_pg_bin("pg_ctl"), "-D", str(pg.data), "-l", log, "-w", "-o", options, "start"),
        check=True,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    trusted = f"postgresql://postgres@127.0.0.1:{port}"
    with psycopg.connect(f"{trusted}/postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE marketlog")
    with schema.connect(f"{trusted}/marketlog") as conn:
        schema.migrate(conn)
        conn.execute("INSERT INTO accounts VALUES ('old', 1, 0, 'c0')")


@pytest.fixture(scope="module")
def pg() -> Iterator[LocalPostgres]:
    # the socket path must stay short, hence /tmp
    root = Path(tempfile.mkdtemp(prefix="pgr-", dir="/tmp"))
    port = free_port()
    found = LocalPostgres(root / "pg", port, durable=False)
    try:
        old_style_cluster(found.home, port)
        found.start()  # running: rewrites pg_hba.conf, reloads, creates the roles, upgrades
        yield found
    finally:
        found.stop()
        shutil.rmtree(root, ignore_errors=True)


def password(pg: LocalPostgres, role: str) -> str:
    return pg.passfile(role).read_text().strip().split(":", 4)[4]


def connect(pg: LocalPostgres, role: str, database: str = "marketlog") -> psycopg.Connection:
    return schema.connect(with_database(pg.role_url(role), database))


def refused(url: str, **kwargs) -> str:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(url, connect_timeout=10, **kwargs).close()
    return str(caught.value)


def test_tcp_refuses_no_password_and_wrong_passwords(pg, tmp_path):
    base = f"postgresql://{{}}@127.0.0.1:{pg.port}/marketlog"
    empty = tmp_path / "empty.pgpass"
    empty.write_text("")
    empty.chmod(0o600)
    for role in (*ROLES, "postgres"):  # postgres: trusted before, no password at all now
        assert "no password supplied" in refused(base.format(role), passfile=str(empty))
        assert "password authentication failed" in refused(
            base.format(role), password="not-" + (password(pg, role) if role in ROLES else "it")
        )
    # another role's password is not this one's
    assert "password authentication failed" in refused(
        base.format("projector"), password=password(pg, "gateway")
    )
    with psycopg.connect(base.format("gateway"), password=password(pg, "gateway")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("gateway",)


def test_the_secrets_are_0600_in_a_0700_directory_and_the_server_log_has_none(pg):
    assert stat.S_IMODE(pg.secrets.stat().st_mode) == 0o700
    assert sorted(p.name for p in pg.secrets.iterdir()) == sorted(f"{r}.pgpass" for r in ROLES)
    for role in ROLES:
        assert stat.S_IMODE(pg.passfile(role).stat().st_mode) == 0o600
        assert len(password(pg, role)) >= 40
    pg.start()  # a second start keeps the passwords (and sets them again, as verifiers)
    server_log = (pg.home / "postgres.log").read_text(errors="replace")
    for role in ROLES:
        assert password(pg, role) not in server_log
        with connect(pg, role) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)


def test_the_upgrade_handed_the_old_tables_to_the_migrator(pg):
    with connect(pg, "gateway") as conn:
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'projection'"
        ).fetchall()
        assert owners == [(MIGRATOR,)]
        assert conn.execute("SELECT account_id FROM accounts").fetchall() == [("old",)]
        supers = conn.execute("SELECT rolname FROM pg_roles WHERE rolsuper").fetchall()
        assert supers == [("postgres",)]
    assert "trust" not in (pg.data / "pg_hba.conf").read_text()


def assert_refused(conn: psycopg.Connection, statement: str, error=NO_RIGHT) -> None:
    with pytest.raises(error):
        conn.execute(statement)


def test_the_gateway_reads_and_can_change_nothing(pg):
    with connect(pg, "gateway") as conn:
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (1,)
        for statement in (
            "INSERT INTO accounts VALUES ('g', 1, 0, 'c1')",
            "UPDATE accounts SET initial_balance = 2",
            "DELETE FROM accounts",
            "TRUNCATE accounts",
            "CREATE TABLE projection.mine (x int)",
            "CREATE TABLE public.mine (x int)",
            "CREATE TEMP TABLE mine (x int)",
            "CREATE SCHEMA mine",
            "DROP TABLE accounts",
            "ALTER TABLE accounts ADD COLUMN x int",
            "CREATE ROLE intruder",
        ):
            assert_refused(conn, statement)
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (1,)


def test_the_projector_writes_rows_but_changes_no_schema_and_makes_no_role(pg):
    with connect(pg, "projector") as conn:
        with conn.transaction(force_rollback=True):
            conn.execute("INSERT INTO accounts VALUES ('p', 1, 0, 'c1')")
            conn.execute("UPDATE accounts SET initial_balance = 2 WHERE account_id = 'p'")
            conn.execute("SELECT * FROM applied_offsets FOR UPDATE")
            conn.execute("DELETE FROM accounts WHERE account_id = 'p'")
            conn.execute("SELECT pg_notify('marketlog_applied', 'x')")
        for statement in (
            "TRUNCATE accounts",
            "DROP TABLE accounts",
            "ALTER TABLE accounts ADD COLUMN x int",
            "DROP SCHEMA projection CASCADE",
            "ALTER SCHEMA projection RENAME TO gone",
            "CREATE TABLE projection.mine (x int)",
            "CREATE TEMP TABLE mine (x int)",
            "CREATE SCHEMA mine",
            "CREATE ROLE intruder",
            "CREATE DATABASE mine",
            "ALTER ROLE gateway PASSWORD 'x'",
        ):
            assert_refused(conn, statement)
        # up to date, migrate reads only; a pending migration it may not apply is refused
        assert schema.migrate(conn) == []
        with pytest.raises(NO_RIGHT):
            schema.migrate(conn, "projection_other")


def test_the_service_roles_reach_no_other_database(pg):
    for role in ("projector", "gateway"):
        assert "permission denied for database" in refused(
            with_database(pg.role_url(role), "postgres")
        )


def test_a_rebuilt_schema_swapped_in_has_the_same_grants(pg):
    with connect(pg, MIGRATOR) as conn:
        schema.drop(conn, schema.REBUILD)
        schema.migrate(conn, schema.REBUILD)
        schema.swap_in(conn)
    with connect(pg, "projector") as conn:
        conn.execute("INSERT INTO accounts VALUES ('rebuilt', 1, 0, 'c2')")
        assert_refused(conn, "TRUNCATE accounts")
    with connect(pg, "gateway") as conn:
        assert conn.execute("SELECT account_id FROM accounts").fetchall() == [("rebuilt",)]
        assert_refused(conn, "DELETE FROM accounts")


def test_a_database_the_migrator_creates_gets_the_grants(pg):
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE own")
    url = with_database(pg.url, "own")
    grant_roles(url)
    with schema.connect(url) as conn:
        assert schema.migrate(conn)
    with connect(pg, "projector", "own") as conn:
        conn.execute("INSERT INTO accounts VALUES ('own', 1, 0, 'c3')")
    with connect(pg, "gateway", "own") as conn:
        assert conn.execute("SELECT account_id FROM accounts").fetchall() == [("own",)]
        assert_refused(conn, "INSERT INTO accounts VALUES ('g', 1, 0, 'c4')")
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("DROP DATABASE own WITH (FORCE)")
