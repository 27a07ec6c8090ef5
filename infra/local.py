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
import pwd
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


# PostgreSQL roles (docs/reliability.md, "Who may connect"): the migrator owns the databases and
# the projection schemas (it runs migrations and rebuilds), the projector writes rows, the gateway
# reads them. The bootstrap superuser `postgres` has no password: only infra reaches it, as the
# cluster's OS user over the Unix socket (peer).
MIGRATOR = "migrator"
SERVICE_ROLES = ("projector", "gateway")
ROLES = (MIGRATOR, *SERVICE_ROLES)
_ROLE_OPTIONS = {
    MIGRATOR: "LOGIN CREATEDB NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS",
    "projector": "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
    "gateway": "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
}
# what each service role may do to the tables the migrator creates (no TRUNCATE: a rebuild swaps
# schemas as the migrator; no sequences: the projection has none)
TABLE_GRANTS = {"projector": "SELECT, INSERT, UPDATE, DELETE", "gateway": "SELECT"}
_PROJECTION_SCHEMAS = "projection%"  # projection, projection_rebuild, projection_retired


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677), so that only
    the verifier, never the password, is sent to the server (and could reach its log)."""
    import hashlib
    import hmac

    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def grants_sql(database: str) -> str:
    """The grants of one database, runnable by its owner (the migrator) or a superuser: only the
    roles connect; whatever the migrator creates from now on (the rebuild's schemas included) is
    readable by the gateway and writable by the projector; so are the projection schemas that
    already exist."""
    db, services = f'"{database}"', ", ".join(SERVICE_ROLES)
    lines = [
        f"REVOKE ALL ON DATABASE {db} FROM PUBLIC;",
        f"GRANT CONNECT ON DATABASE {db} TO {services};",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {MIGRATOR} GRANT USAGE ON SCHEMAS TO {services};",
    ]
    existing = []
    for role, grants in TABLE_GRANTS.items():
        lines.append(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {MIGRATOR} GRANT {grants} ON TABLES TO {role};"
        )
        existing.append(
            f"EXECUTE format('GRANT {grants} ON ALL TABLES IN SCHEMA %I TO {role}', s.nspname);"
        )
    lines.append(
        "DO $$ DECLARE s record; BEGIN"
        f" FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE '{_PROJECTION_SCHEMAS}'"
        f" LOOP EXECUTE format('GRANT USAGE ON SCHEMA %I TO {services}', s.nspname);"
        f" {' '.join(existing)} END LOOP; END $$;"
    )
    return "\n".join(lines) + "\n"


def grant_roles(owner_url: str) -> None:
    """Apply grants_sql to the database owner_url names, as its owner (a test's own database)."""
    import psycopg

    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(grants_sql(conn.info.dbname))


def with_database(url: str, name: str) -> str:
    """The same server and credentials (URL or key=value conninfo), another database."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, dbname=name)


class LocalPostgres:
    """A private PostgreSQL cluster; `durable=False` (tests) turns fsync off.

    TCP (127.0.0.1) takes a SCRAM password from every role; the Unix socket lets in only the
    cluster's OS user, as `postgres` (peer). Each role's password is made on first start and kept
    in ``secrets`` (default: beside ``home``) as a libpq password file, ``<role>.pgpass``, mode
    0600 in a 0700 directory; services find it through the `passfile` of their database URL."""

    def __init__(
        self, home: Path, port: int = 55432, durable: bool = True, secrets: Path | None = None
    ) -> None:
        self.home, self.port, self.durable = home, port, durable
        self.data = home / "data"
        self.secrets = secrets or home.parent / "secrets"

    @property
    def base_url(self) -> str:
        """The server and database, no role: what a service gets before it names its own."""
        return f"postgresql://127.0.0.1:{self.port}/marketlog"

    def role_url(self, role: str) -> str:
        from urllib.parse import quote

        return (
            f"postgresql://{role}@127.0.0.1:{self.port}/marketlog"
            f"?passfile={quote(str(self.passfile(role)))}"
        )

    @property
    def url(self) -> str:
        """The migrator's URL: migrations, rebuilds, tests' and benchmarks' own databases."""
        return self.role_url(MIGRATOR)

    def passfile(self, role: str) -> Path:
        return self.secrets / f"{role}.pgpass"

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

    def _password(self, role: str) -> str:
        """The role's password, made on first use: never printed, never logged."""
        import secrets

        self.secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.secrets, 0o700)
        path = self.passfile(role)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(f"*:*:*:{role}:{secrets.token_urlsafe(32)}\n")
        os.chmod(path, 0o600)  # libpq ignores a password file others may read
        return path.read_text().strip().split(":", 4)[4]

    def _write_access(self) -> None:
        """pg_hba.conf: SCRAM for TCP, peer for the cluster's OS user on the socket, nothing
        else. Written at every start, so a cluster made before the roles (trust) is upgraded."""
        os_user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        (self.data / "pg_hba.conf").write_text(
            "# written by infra/local.py at every start (docs/reliability.md)\n"
            "# TYPE  DATABASE  USER      ADDRESS       METHOD\n"
            "local   all       postgres                peer map=admin\n"
            "host    all       all       127.0.0.1/32  scram-sha-256\n"
        )
        (self.data / "pg_ident.conf").write_text(f"admin {os_user} postgres\n")

    def _admin(self, script: str) -> None:
        """Run SQL as `postgres` over the socket (psql, the script on stdin: no secret in argv)."""
        done = subprocess.run(
            self._as_postgres(
                _pg_bin("psql"),
                *("-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.home), "-p", str(self.port)),
                *("-U", "postgres", "-d", "postgres", "-f", "-"),
            ),
            input=script,
            text=True,
            capture_output=True,
        )
        if done.returncode != 0:
            raise InfraError(f"PostgreSQL setup failed: {done.stderr.strip()}")

    def _provision(self) -> None:
        """Roles with their passwords, the marketlog database owned by the migrator, grants.
        Idempotent: run at every start (a state directory of before the roles upgrades here)."""
        script = ["SET client_min_messages = warning;"]
        for role in ROLES:
            verifier = scram_verifier(self._password(role))
            script += [
                f"SELECT 'CREATE ROLE {role}' WHERE NOT EXISTS"
                f" (SELECT FROM pg_roles WHERE rolname = '{role}')\\gexec",
                f"ALTER ROLE {role} WITH {_ROLE_OPTIONS[role]} PASSWORD '{verifier}';",
            ]
        script += [
            "SELECT 'CREATE DATABASE marketlog' WHERE NOT EXISTS"
            " (SELECT FROM pg_database WHERE datname = 'marketlog')\\gexec",
            f"ALTER DATABASE marketlog OWNER TO {MIGRATOR};",
            # the maintenance database: the migrator may connect (tests create databases from
            # it), the service roles may not
            "REVOKE ALL ON DATABASE postgres FROM PUBLIC;",
            f"GRANT CONNECT ON DATABASE postgres TO {MIGRATOR};",
            "\\connect marketlog",
            "SET client_min_messages = warning;",
            # projection schemas made before the roles were the superuser's: the migrator's now
            "DO $$ DECLARE r record; BEGIN"
            f" FOR r IN SELECT nspname FROM pg_namespace WHERE nspname LIKE '{_PROJECTION_SCHEMAS}'"
            f" LOOP EXECUTE format('ALTER SCHEMA %I OWNER TO {MIGRATOR}', r.nspname); END LOOP;"
            " FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE n.nspname LIKE '{_PROJECTION_SCHEMAS}' AND c.relkind IN ('r', 'p', 'v', 'm')"
            f" LOOP EXECUTE format('ALTER TABLE %s OWNER TO {MIGRATOR}', r.rel); END LOOP;"
            " END $$;",
            grants_sql("marketlog"),
        ]
        self._admin("\n".join(script) + "\n")

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
                    "--auth-local=peer",  # replaced by _write_access before the first start
                    "--auth-host=reject",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        self._write_access()
        if self.running():  # started before this version: take the new pg_hba.conf now
            subprocess.run(
                self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data), "reload"),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        else:
            if port_open(self.port):
                raise InfraError(f"port {self.port} is taken by another process")
            options = [
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.home}",
                "-c max_connections=300 -c shared_buffers=256MB",
                "-c password_encryption=scram-sha-256",
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
        self._provision()

    def stop(self) -> bool:
        if not (self.data / "postmaster.pid").exists():
            return False
        subprocess.run(
            self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"),
            stdout=subprocess.DEVNULL,
            check=False,
        )
        return True
