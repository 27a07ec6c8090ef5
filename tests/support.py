"""Helpers for tests that talk to the real broker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from services.common.config import ROOT, Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a service subprocess needs to see the test's settings."""
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka,
        DATABASE_URL=settings.database_url,
        MARKETLOG_TOPIC_PREFIX=settings.topic_prefix,
        MARKETLOG_PARTITIONS=str(settings.partitions),
        MARKETLOG_INSTANCE=settings.instance,
        MARKETLOG_RUN_DIR=str(settings.run_dir),
        **extra,
    )
    return env


def run_cli(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m <args>`` (a service's command line) against these settings, output captured."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def create_topics(
    settings: Settings, partitions: int, *names: str, compacted: bool = False
) -> None:
    config = {"cleanup.policy": "compact"} if compacted else {}
    admin = AdminClient({"bootstrap.servers": settings.kafka})
    futures = admin.create_topics([NewTopic(n, partitions, 1, config=config) for n in names])
    for future in futures.values():
        future.result()


def read_all(
    settings: Settings, topic: str, *, committed: bool = True, timeout: float = 30.0
) -> list:
    """Every record of every partition of topic, up to the end as of now, in partition order."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka,
            "group.id": "reader",
            "isolation.level": "read_committed" if committed else "read_uncommitted",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(topic, 10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records, pending, deadline = [], set(partitions), time.monotonic() + timeout
    try:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {sorted(pending)} never ended")
            for record in consumer.consume(1000, 0.2):
                if record.error() is None:
                    records.append(record)
                elif record.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(record.partition())
    finally:
        consumer.close()
    return records


def wait_until(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class ServiceProcs:
    """Marketlog services as subprocesses (``python -m services.<name> serve``) for a test.

    Each writes its log to ``logs/<name>.log``; ``start`` returns once the service's ready file
    appears in the settings' run directory; ``kill`` is SIGKILL, no goodbye.
    """

    def __init__(self, settings: Settings, logs, **env: str) -> None:
        self.settings, self.logs = settings, logs
        self.env = settings_env(settings, PYTHONPATH=str(ROOT), **env)
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, *names: str, timeout: float = 120.0) -> None:
        for name in names:
            for ready in self.settings.run_dir.glob(f"{name}-*.ready"):
                ready.unlink()
            with open(self.logs / f"{name}.log", "ab") as log:
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", f"services.{name}", "serve"],
                    env=self.env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        for name in names:
            wait_until(lambda n=name: self._ready(n), timeout, f"{name} to be live")

    def _ready(self, name: str) -> bool:
        if self.procs[name].poll() is not None:
            raise RuntimeError(
                f"{name} exited with {self.procs[name].returncode}:\n{self.log(name)}"
            )
        return any(self.settings.run_dir.glob(f"{name}-*.ready"))

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
