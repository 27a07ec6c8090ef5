"""The whole running system for end-to-end tests: ledger, matcher, projector, quote server and
gateway started as subprocesses (``python -m services.X serve``) against the session's broker and
a database of their own, on free ports, with a topic prefix of their own. Started once per
session, on first use, and stopped after."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from infra.local import grant_roles, with_database
from infra.stack import topology_services
from services.common.config import Settings
from services.common.metrics import METRICS_PORTS
from services.common.topics import provision
from services.projector import schema
from tests.support import ServiceProcs, drop_database, free_ports, wait_until

# the browser tests' Chromium (tests/e2e/browser.py), registered once for every module here
from .browser import browser, page  # noqa: F401

SERVICES = ("projector", "ledger", "matcher", "engine", "quotes", "gateway", "analytics")
# the split topology by default (what `make up` runs); MARKETLOG_E2E_TOPOLOGY=engine runs the
# same suite over the engine (services/engine: one processor, one partition)
TOPOLOGY = os.environ.get("MARKETLOG_E2E_TOPOLOGY", "split")
ADMIN_KEY = "e2e-admin-" + uuid.uuid4().hex


@dataclass(frozen=True)
class System:
    settings: Settings
    xml_port: int
    http_url: str
    admin_key: str
    logs: Path
    procs: ServiceProcs
    quote_port: int = 0
    daytrade_port: int = 0  # the day-trading line protocol
    dump_dir: Path | None = None  # where DUMPLOG writes
    private_port: int = 0  # the JSON-lines channels (docs/channels.md)
    public_port: int = 0

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@pytest.fixture(scope="session")
def system(services, tmp_path_factory) -> Iterator[System]:
    database = f"e2e{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    url = with_database(services.database_url, database)
    if services.secrets is not None:  # the services connect as their roles, as under `make up`
        grant_roles(url)
        with schema.connect(url) as conn:  # as the migrator: the projector's role may not
            schema.migrate(conn)
    settings = Settings(
        kafka=services.kafka,
        database_url=url,
        topic_prefix=f"e2e{uuid.uuid4().hex[:8]}.",
        partitions=1 if TOPOLOGY == "engine" else 2,
        instance="0",
        run_dir=tmp_path_factory.mktemp("run"),
    )
    provision(settings)
    logs = tmp_path_factory.mktemp("logs")
    # every port distinct: separate free_port() calls may return one port twice
    xml_port, http_port, quote_port, private_port, public_port, daytrade_port, *metrics = (
        free_ports(6 + len(METRICS_PORTS))
    )
    dump_dir = tmp_path_factory.mktemp("dumps")
    procs = ServiceProcs(
        settings,
        logs,
        db_secrets=services.secrets,
        MARKETLOG_XML_PORT=str(xml_port),
        MARKETLOG_HTTP_PORT=str(http_port),
        MARKETLOG_ADMIN_KEY=ADMIN_KEY,
        # each service's metrics on a port of its own, for the dashboard and `infra status`
        **{
            f"MARKETLOG_{name.upper()}_METRICS_PORT": str(port)
            for name, port in zip(METRICS_PORTS, metrics, strict=True)
        },
        MARKETLOG_QUOTE_PORT=str(quote_port),
        MARKETLOG_DAYTRADE_PORT=str(daytrade_port),
        MARKETLOG_DUMP_DIR=str(dump_dir),
        MARKETLOG_TICK_MS="200",  # day-trading triggers fire within a fraction of a second
        MARKETLOG_PRIVATE_PORT=str(private_port),
        MARKETLOG_PUBLIC_PORT=str(public_port),
        MARKETLOG_TOPOLOGY=TOPOLOGY,
    )
    try:
        procs.start(*topology_services(SERVICES, TOPOLOGY))
        http_url = f"http://127.0.0.1:{http_port}"
        yield System(
            settings,
            xml_port,
            http_url,
            ADMIN_KEY,
            logs,
            procs,
            quote_port,
            daytrade_port=daytrade_port,
            dump_dir=dump_dir,
            private_port=private_port,
            public_port=public_port,
        )
    finally:
        procs.stop_all()
        if os.environ.get("MARKETLOG_E2E_KEEP_DB") != "1":
            with psycopg.connect(services.database_url, autocommit=True) as conn:
                # FORCE may end only the migrator's own sessions: wait for the services' to go
                wait_until(
                    lambda: (
                        not conn.execute(
                            "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND usename <> %s",
                            (database, conn.info.user),
                        ).fetchone()
                    ),
                    30,
                    "the services' PostgreSQL sessions to end",
                )
            drop_database(services.database_url, database)
