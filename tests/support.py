"""Helpers for tests that talk to the real broker."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable

from infra.stack import ServiceProcs, create_topics, free_port, free_ports, settings_env
from services.common.config import Settings
from services.common.reader import read_topic
from services.common.topics import provision

# the stack helpers live in infra.stack (benchmarks use them too); tests import them from here
__all__ = [
    "ServiceProcs",
    "create_topics",
    "free_port",
    "free_ports",
    "read_all",
    "run_cli",
    "settings_env",
    "wait_until",
]


def run_cli(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m <args>`` (a service's command line) against these settings, output captured."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_all(
    settings: Settings, topic: str, *, committed: bool = True, timeout: float = 30.0
) -> list:
    """Every record of every partition of topic, up to the end as of now, in partition order."""
    return list(read_topic(settings, topic, committed=committed, idle_timeout=timeout))


def wait_until(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def fresh_settings(kafka: str, database_url: str, run_dir, partitions: int = 4) -> Settings:
    """Settings with a topic prefix of the test's own, every spec'd topic provisioned."""
    found = Settings(
        kafka=kafka,
        database_url=database_url,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        partitions=partitions,
        instance="0",
        run_dir=run_dir,
    )
    provision(found)
    return found


def drop_database(admin_url: str, name: str, timeout: float = 30.0) -> None:
    """DROP DATABASE ``name``, ending the sessions still on it.

    ``WITH (FORCE)`` refuses to end an autovacuum worker of that database (the worker runs as no
    role: "must be a member of the role whose process is being terminated", seen once at the
    teardown of a test that had written 100k rows), while a plain DROP stops autovacuum workers
    itself. So on that refusal the plain DROP is tried until the other sessions are gone."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(admin_url, autocommit=True) as conn:
        while True:
            try:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                return
            except psycopg.errors.InsufficientPrivilege:
                try:
                    conn.execute(f"DROP DATABASE IF EXISTS {name}")
                    return
                except psycopg.errors.ObjectInUse:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
