"""The projection schema: numbered SQL migrations, connections, rebuild's schema swap, snapshots.

Every projector table lives in one PostgreSQL schema (``projection``), so a rebuild can build a
fresh copy beside it (``projection_rebuild``) and swap the two in one transaction: readers see the
old tables until the new ones are complete. Migrations are the plain files
``migrations/NNNN_name.sql``, applied in order, each recorded in ``schema_migrations`` (version,
name, checksum) inside the schema; an applied migration whose file changed is an error.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import psycopg
from psycopg import sql

LIVE = "projection"
REBUILD = "projection_rebuild"
RETIRED = "projection_retired"
CHANNEL = "marketlog_applied"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# advisory lock: schema changes (migrate, swap) take it alone, one at a time; each batch's write
# shares it (store.apply), so a swap waits for the batch written into the tables it replaces
SCHEMA_LOCK = 0x4D4C5052
PREPARE_AFTER = 5  # executions before psycopg prepares a statement (its own default)
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


class MigrationError(RuntimeError):
    """The migration files and the database disagree."""


def connect(url: str, schema: str = LIVE, *, prepare: bool = False, **kwargs) -> psycopg.Connection:
    """An autocommit connection (transactions are explicit) whose bare table names are the
    projection schema's.

    ``prepare``: psycopg prepares a statement from its fifth execution on (its default), so a
    batch's dozen statements skip PostgreSQL's parse and, once its generic plan is chosen, its
    planning: the writer's backend took 204-243 µs of CPU per order at 500 XML orders/s without,
    135-164 with (docs/performance.md). A rebuild's swap renames schemas under a prepared
    statement: PostgreSQL re-analyses it when the search path names another schema than at
    its preparation, so it then reaches the swapped-in tables (tests/integration/test_projector.py).
    Off by default: one-off connections gain nothing from it.

    random_page_cost 1.1: the default 4 prices a spinning disk and steers the planner away from
    looking rows up by key (docs/projector.md measured one such plan: a batch's 15 order updates
    joined to every row of ``orders``, 18 ms against 0.4 ms by the primary key)."""
    kwargs.setdefault("autocommit", True)
    options = f"-c search_path={schema} -c random_page_cost=1.1"
    threshold = PREPARE_AFTER if prepare else None
    return psycopg.connect(url, options=options, prepare_threshold=threshold, **kwargs)


def migration_files(folder: Path = MIGRATIONS) -> list[tuple[int, str, str]]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migrations are named NNNN_name.sql")
        found.append((int(match.group(1)), match.group(2), path.read_text()))
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration numbers must be 1, 2, 3, … without gaps: {versions}")
    return found


def up_to_date(conn: psycopg.Connection, schema: str = LIVE) -> bool:
    """Whether every migration file is applied to `schema`, unchanged. Reads only: the
    projector's role, which may not change the schema, checks this at start."""
    found = conn.execute(
        "SELECT to_regclass(quote_ident(%s) || '.schema_migrations')", (schema,)
    ).fetchone()
    if found is None or found[0] is None:
        return False
    query = sql.SQL("SELECT version, checksum FROM {}.schema_migrations")
    done = dict(conn.execute(query.format(sql.Identifier(schema))).fetchall())
    wanted = {v: hashlib.sha256(text.encode()).hexdigest() for v, _, text in migration_files()}
    return done == wanted


def migrate(conn: psycopg.Connection, schema: str = LIVE) -> list[str]:
    """Create the schema if needed and apply the migrations it lacks. Returns those applied.
    Up to date, it changes nothing (and needs no right to: docs/reliability.md)."""
    if up_to_date(conn, schema):
        return []
    ident = sql.Identifier(schema)
    applied_now = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        conn.execute(sql.SQL("SET LOCAL search_path = {}").format(ident))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL)"
        )
        done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
        for version, name, text in migration_files():
            checksum = hashlib.sha256(text.encode()).hexdigest()
            if version in done:
                if done[version] != checksum:
                    raise MigrationError(f"migration {version:04d}_{name} changed after it ran")
                continue
            conn.execute(text)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (%s, %s, %s)", (version, name, checksum)
            )
            applied_now.append(f"{version:04d}_{name}")
    return applied_now


def drop(conn: psycopg.Connection, schema: str) -> None:
    with conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def swap_in(conn: psycopg.Connection, built: str = REBUILD, live: str = LIVE) -> None:
    """Make `built` the live schema in one transaction and announce its applied offsets."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(RETIRED)))
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (live,)).fetchone()
        if exists:
            conn.execute(
                sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(live), sql.Identifier(RETIRED)
                )
            )
        conn.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(built), sql.Identifier(live)
            )
        )
        # waiting readers may be behind what the swapped-in tables hold, never ahead of it
        conn.execute(
            sql.SQL(
                "SELECT pg_notify(%s, topic || ':' || partition || ':' || next_offset)"
                " FROM {}.applied_offsets"
            ).format(sql.Identifier(live)),
            (CHANNEL,),
        )
    drop(conn, RETIRED)


def tables(conn: psycopg.Connection, schema: str = LIVE) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = %s AND table_name <> 'schema_migrations' ORDER BY 1",
        (schema,),
    ).fetchall()
    return [name for (name,) in rows]


def contents(conn: psycopg.Connection, schema: str = LIVE) -> dict[str, list[tuple]]:
    """Every projection table's rows, ordered by all columns: two equal builds compare equal."""
    found = {}
    for table in tables(conn, schema):
        query = sql.SQL("SELECT * FROM {}.{} t ORDER BY t").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        found[table] = conn.execute(query).fetchall()
    return found
