"""Local Apache Kafka (jars from Maven Central, KRaft) and PostgreSQL (Debian's package) processes.

Used by `make run/up/down` (through `python -m infra`) and by the test fixtures. Both servers
listen on 127.0.0.1 only and keep their data under a state directory of the project. PostgreSQL
refuses to run as root, so when we are root it runs as the `postgres` user.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("MARKETLOG_STATE", ROOT / ".state"))
KAFKA_LIBS = Path(os.environ.get("MARKETLOG_KAFKA_LIBS", ROOT / ".cache" / "kafka" / "libs"))
KAFKA_DIR = ROOT / "infra" / "kafka"
KAFKA_EXTRA = os.environ.get("MARKETLOG_KAFKA_PROPS", "")


class InfraError(RuntimeError):
    pass


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def stop_pid(pid_file: Path, timeout: float = 30.0) -> bool:
    """SIGTERM the process group in pid_file, SIGKILL it after timeout. True if one was running."""
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip() or 0)
    pid_file.unlink()
    if not pid or not _alive(pid):
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    with_children_gone(pid)
    return True


def with_children_gone(pgid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def wait_for(check, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise InfraError(f"timed out after {timeout:.0f}s waiting for {what}")


class LocalKafka:
    """A single-node combined broker/controller."""

    def __init__(self, home: Path, port: int = 19092, controller_port: int = 19093) -> None:
        self.home, self.port, self.controller_port = home, port, controller_port
        self.pid_file = home / "kafka.pid"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.pid_file.exists() and _alive(int(self.pid_file.read_text() or 0))

    def _java(self, *args: str, heap: str) -> list[str]:
        if not any(KAFKA_LIBS.glob("kafka_2.13-*.jar")):
            raise InfraError(f"Kafka jars missing in {KAFKA_LIBS}: run `make deps`")
        return [
            "java",
            *heap.split(),
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp",
            f"{KAFKA_LIBS}/*",
            *args,
        ]

    def _configure(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        props.write_text(
            (KAFKA_DIR / "server.properties")
            .read_text()
            .format(
                port=self.port, controller_port=self.controller_port, data_dir=self.home / "data"
            )
            # experiments (docs/performance.md): extra broker settings, "key=value;key=value"
            + "".join(f"{kv.strip()}\n" for kv in KAFKA_EXTRA.split(";") if kv.strip())
        )
        if not (self.home / "data" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={cluster_id}",  # "=": an id may start with "-"
                    "-c",
                    str(props),
                    "--ignore-formatted",
                    heap="-Xmx256m",
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        return props

    def start(self, timeout: float = 90.0) -> None:
        if self.running():
            return
        if port_open(self.port):
            raise InfraError(f"port {self.port} is taken by another process")
        props = self._configure()
        log = open(self.home / "kafka.log", "ab")  # noqa: SIM115 - handed to the child
        # ZGC: G1's young pauses (35-120 ms every ~10 s at 250 orders/s, copying ~23 MB of
        # survivors on two cores) stopped every hop at once and made the p99 (docs/performance.md).
        heap = os.environ.get("MARKETLOG_KAFKA_JVM", "-Xms1g -Xmx1g -server -XX:+UseZGC")
        proc = subprocess.Popen(
            self._java("kafka.Kafka", str(props), heap=heap),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid_file.write_text(str(proc.pid))
        wait_for(
            lambda: self._ready(proc),
            f"Kafka on {self.bootstrap} (log: {self.home}/kafka.log)",
            timeout,
        )

    def _ready(self, proc: subprocess.Popen) -> bool:
        if proc.poll() is not None:
            raise InfraError(f"Kafka exited with {proc.returncode}; see {self.home}/kafka.log")
        if not port_open(self.port):
            return False
        from confluent_kafka.admin import AdminClient

        try:
            AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
            return True
        except Exception:
            return False

    def stop(self) -> bool:
        return stop_pid(self.pid_file, timeout=60)


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise InfraError(
            "PostgreSQL server binaries not found: run `make deps` (apt-get install postgresql)"
        )
    return found[-1]


class LocalPostgres:
    """A private PostgreSQL cluster; `durable=False` (tests) turns fsync off."""

    def __init__(self, home: Path, port: int = 55432, durable: bool = True) -> None:
        self.home, self.port, self.durable = home, port, durable
        self.data = home / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/marketlog"

    def _as_postgres(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def _own(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres", "postgres")
            for path in self.home.parents:  # postgres must be able to reach its directory
                if path == Path("/"):
                    break
                if not os.stat(path).st_mode & 0o001:
                    os.chmod(path, os.stat(path).st_mode | 0o011)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists() and subprocess.run(
            self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data), "status"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ).returncode == 0

    def start(self) -> None:
        self._own()
        if not (self.data / "PG_VERSION").exists():
            subprocess.run(
                self._as_postgres(
                    _pg_bin("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        if not self.running():
            if port_open(self.port):
                raise InfraError(f"port {self.port} is taken by another process")
            options = [
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.home}",
                "-c max_connections=300 -c shared_buffers=256MB",
            ]
            if not self.durable:
                options.append("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            subprocess.run(
                self._as_postgres(
                    _pg_bin("pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.home / "postgres.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    " ".join(options),
                    "start",
                ),
                check=True,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._create_database()

    def _create_database(self) -> None:
        import psycopg

        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'marketlog'").fetchone():
                conn.execute("CREATE DATABASE marketlog")

    def stop(self) -> bool:
        if not (self.data / "postmaster.pid").exists():
            return False
        subprocess.run(
            self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"),
            stdout=subprocess.DEVNULL,
            check=False,
        )
        return True
