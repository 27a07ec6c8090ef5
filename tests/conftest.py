"""Real Kafka and PostgreSQL for the test session, three ways (see infra/local.py):

1. KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL set: use them, and fail if they do not answer;
2. a Docker engine answers: testcontainers;
3. otherwise start local processes (KRaft broker from the Maven jars, Debian's PostgreSQL) under
   .state/test on their own ports, once per session.

Nothing is ever skipped for lack of a service. Each test gets its own topic prefix and database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from infra.local import STATE, LocalKafka, LocalPostgres, grant_roles, with_database
from services.common.config import Settings
from tests.support import drop_database, fresh_settings


@dataclass(frozen=True)
class Services:
    kafka: str
    database_url: str  # of the server's admin database; tests create their own databases
    # the local server's role passwords (infra/local.py): its admin URL is the migrator's, the
    # e2e services connect as their own roles; None for a server given from outside
    secrets: Path | None = None


def _docker_engine() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def _check_reachable(services: Services) -> None:
    AdminClient({"bootstrap.servers": services.kafka}).list_topics(timeout=15)
    with psycopg.connect(services.database_url, connect_timeout=15):
        pass


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    kafka, database = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("DATABASE_URL")
    if kafka and database:
        found = Services(kafka, database)
        _check_reachable(found)
        yield found
        return
    if _docker_engine():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with (
            KafkaContainer().with_kraft() as k,
            PostgresContainer("postgres:16", driver=None) as pg,
        ):
            yield Services(k.get_bootstrap_server(), pg.get_connection_url())
        return
    home = STATE / "test"
    kafka_proc = LocalKafka(home / "kafka", 29092, 29093)
    pg_proc = LocalPostgres(home / "postgres", 55433, durable=False)
    kafka_proc.stop()
    pg_proc.stop()
    shutil.rmtree(home, ignore_errors=True)
    kafka_proc.start()
    pg_proc.start()
    try:
        yield Services(kafka_proc.bootstrap, pg_proc.url, pg_proc.secrets)
    finally:
        kafka_proc.stop()
        pg_proc.stop()


@pytest.fixture
def settings(services: Services, tmp_path) -> Settings:
    """Settings with a topic prefix of the test's own, every spec'd topic provisioned."""
    return fresh_settings(services.kafka, services.database_url, tmp_path / "run")


@pytest.fixture
def database_url(services: Services) -> Iterator[str]:
    """A fresh, empty database of the test's own (the service roles' grants in place)."""
    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = with_database(services.database_url, name)
    if services.secrets is not None:
        grant_roles(url)
    yield url
    drop_database(services.database_url, name)
