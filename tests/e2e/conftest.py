"""The whole running system for end-to-end tests: ledger, matcher, projector and gateway started
as subprocesses (``python -m services.X serve``) against the session's broker and a database of
their own, on free ports, with a topic prefix of their own. Started once per session, on first
use, and stopped after."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from services.common.config import ROOT, Settings
from services.common.topics import provision
from tests.support import settings_env

SERVICES = ("projector", "ledger", "matcher", "gateway")
ADMIN_KEY = "e2e-admin-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class System:
    settings: Settings
    xml_port: int
    http_url: str
    admin_key: str
    logs: Path

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _missing_services() -> list[str]:
    return [s for s in SERVICES if not (ROOT / "services" / s / "__main__.py").exists()]


def _wait_ready(settings: Settings, procs: dict, logs: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    pending = set(procs)
    while pending:
        for name in list(pending):
            if procs[name].poll() is not None:
                tail = (logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {procs[name].returncode}:\n{tail}")
            if any(settings.run_dir.glob(f"{name}*.ready")):
                pending.discard(name)
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")
        time.sleep(0.2)


def _stop(procs: dict) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def system(services, tmp_path_factory) -> Iterator[System]:
    missing = _missing_services()
    if missing:
        pytest.skip(f"no entry point yet for: {', '.join(missing)}")
    database = f"e2e{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    settings = Settings(
        kafka=services.kafka,
        database_url=services.database_url.rsplit("/", 1)[0] + f"/{database}",
        topic_prefix=f"e2e{uuid.uuid4().hex[:8]}.",
        partitions=2,
        instance="0",
        run_dir=tmp_path_factory.mktemp("run"),
    )
    provision(settings)
    logs = tmp_path_factory.mktemp("logs")
    xml_port, http_port = free_port(), free_port()
    env = settings_env(
        settings,
        MARKETLOG_XML_PORT=str(xml_port),
        MARKETLOG_HTTP_PORT=str(http_port),
        MARKETLOG_ADMIN_KEY=ADMIN_KEY,
        MARKETLOG_METRICS_PORT="0",
        PYTHONPATH=str(ROOT),
    )
    procs: dict[str, subprocess.Popen] = {}
    files = []
    try:
        for name in SERVICES:
            out = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed below
            files.append(out)
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}", "serve"],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_ready(settings, procs, logs)
        yield System(settings, xml_port, f"http://127.0.0.1:{http_port}", ADMIN_KEY, logs)
    finally:
        _stop(procs)
        for out in files:
            out.close()
        if os.environ.get("MARKETLOG_E2E_KEEP_DB") != "1":
            with psycopg.connect(services.database_url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
