"""The local stack as code, for `python -m infra`, the tests and the benchmarks.

``KAFKA`` and ``POSTGRES`` are the broker and database `make up` runs (ports from the
environment). ``ServiceProcs`` runs Marketlog services as subprocesses against any Settings (a
test's topics, a benchmark's broker): ``python -m services.<name> serve``, each logging to
``<logs>/<name>.log``; ``start`` returns once each service's ready file appears.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from services.common.config import ROOT, Settings, topology
from services.common.topics import wait_for_leaders

from .local import SERVICE_ROLES, STATE, LocalKafka, LocalPostgres

KAFKA = LocalKafka(
    STATE / "kafka",
    int(os.environ.get("MARKETLOG_KAFKA_PORT", "19092")),
    int(os.environ.get("MARKETLOG_KAFKA_CONTROLLER_PORT", "19093")),
)
POSTGRES = LocalPostgres(STATE / "postgres", int(os.environ.get("MARKETLOG_PG_PORT", "55432")))


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n distinct free ports: each socket stays bound until all are chosen, so the kernel cannot
    hand out one port twice (separate free_port() calls can, and did: a test's PostgreSQL and
    Kafka controller got the same port)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


# every port a gateway opens (and the quote server it asks), by surface, with its variable
GATEWAY_SURFACES = ("xml", "http", "daytrade", "private", "public", "quote")


def gateway_ports(metrics: bool = False) -> tuple[dict[str, int], dict[str, str]]:
    """Free ports for every gateway surface (and its metrics, if asked: key "gateway_metrics"),
    and the environment that gives them to a gateway: a benchmark's or a test's stack must not
    take the defaults of a `make up` on the machine. One free_ports call: no port twice."""
    names = (*GATEWAY_SURFACES, *(("gateway_metrics",) if metrics else ()))
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    return ports, {f"MARKETLOG_{s.upper()}_PORT": str(port) for s, port in ports.items()}


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a service subprocess needs to see these settings."""
    env = dict(os.environ)
    # metrics off unless asked for (`extra`): a test's or a benchmark's stack must not take the
    # default ports from a `make up` on the same machine (services/common/metrics.py)
    env["MARKETLOG_METRICS_PORT"] = "0"
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka,
        DATABASE_URL=settings.database_url,
        MARKETLOG_TOPIC_PREFIX=settings.topic_prefix,
        MARKETLOG_PARTITIONS=str(settings.partitions),
        MARKETLOG_INSTANCE=settings.instance,
        MARKETLOG_RUN_DIR=str(settings.run_dir),
        MARKETLOG_KAFKA_SECURITY=settings.kafka_security,  # cluster mode: the principal's file
        MARKETLOG_KAFKA_MODE=settings.kafka_mode,
        **extra,
    )
    return env


def create_topics(
    settings: Settings, partitions: int, *names: str, compacted: bool = False
) -> None:
    """Topics outside infra/topics.toml (a test's or a benchmark's own), replication 1."""
    config = {"cleanup.policy": "compact"} if compacted else {}
    admin = AdminClient({"bootstrap.servers": settings.kafka})
    futures = admin.create_topics([NewTopic(n, partitions, 1, config=config) for n in names])
    for future in futures.values():
        future.result()
    wait_for_leaders(admin, list(names))


# which services carry orders in each topology (services/common/config.py)
PROCESSORS = {"split": ("ledger", "matcher"), "engine": ("engine",)}
# every service of the Procfile (what `make up` runs): the benches measure the CPU of an order
# over all of them (topology_services leaves out the other topology's processors)
EVERY_SERVICE = ("projector", "ledger", "matcher", "engine", "analytics", "quotes", "gateway")


def topology_services(names: list[str] | tuple[str, ...], chosen: str | None = None) -> list[str]:
    """`names` with the processors of the other topology left out."""
    chosen = chosen or topology()
    other = {n for t, procs in PROCESSORS.items() if t != chosen for n in procs}
    return [n for n in names if n not in other]


class ServiceProcs:
    """Marketlog services as subprocesses; ``kill`` is SIGKILL, no goodbye. With ``db_secrets``
    (a LocalPostgres's), the services that use PostgreSQL connect as their own roles, as under
    `make up`; without, as whoever settings.database_url names. With ``credentials`` (service ->
    its SASL settings file, infra/cluster.py), each service speaks to the brokers as its own
    principal, as under `make cluster`.

    A name is a service (``ledger``) or one instance of it (``ledger@1``: MARKETLOG_INSTANCE=1,
    its own transactional id and static group member), to run several side by side."""

    def __init__(
        self,
        settings: Settings,
        logs: Path,
        db_secrets: Path | None = None,
        credentials: dict[str, str] | None = None,
        **env: str,
    ) -> None:
        self.settings, self.logs, self.db_secrets = settings, logs, db_secrets
        self.credentials = credentials or {}
        self.env = settings_env(settings, PYTHONPATH=str(ROOT), **env)
        self.procs: dict[str, subprocess.Popen] = {}

    def _env(self, name: str) -> dict[str, str]:
        service, _, instance = name.partition("@")
        env = {**self.env, "MARKETLOG_INSTANCE": instance} if instance else self.env
        if service in self.credentials:
            env = {**env, "MARKETLOG_KAFKA_SECURITY": self.credentials[service]}
        if self.db_secrets is None or service not in SERVICE_ROLES:
            return env
        return {**env, "MARKETLOG_DB_ROLE": service, "MARKETLOG_DB_SECRETS": str(self.db_secrets)}

    def start(self, *names: str, timeout: float = 120.0) -> None:
        for name in names:
            for ready in self.settings.run_dir.glob(self._ready_glob(name)):
                ready.unlink()
            with open(self.logs / f"{name}.log", "ab") as log:
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", f"services.{name.partition('@')[0]}", "serve"],
                    env=self._env(name),
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        for name in names:
            deadline = time.monotonic() + timeout
            while not self._ready(name):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"timed out after {timeout}s waiting for {name} to be live")
                time.sleep(0.2)

    def _ready(self, name: str) -> bool:
        if self.procs[name].poll() is not None:
            raise RuntimeError(
                f"{name} exited with {self.procs[name].returncode}:\n{self.log(name)}"
            )
        return any(self.settings.run_dir.glob(self._ready_glob(name)))

    @staticmethod
    def _ready_glob(name: str) -> str:
        service, _, instance = name.partition("@")
        return f"{service}-{instance or '*'}.ready"

    def kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait(10)

    def signal(self, name: str, sig: int) -> None:
        """Send a signal (e.g. SIGSTOP / SIGCONT to pause and resume a service)."""
        self.procs[name].send_signal(sig)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
