"""`python -m infra.cluster {up,down,status}`: Marketlog on three KRaft brokers (`make cluster`).

Three combined broker+controller nodes on 127.0.0.1 (a 3-voter quorum), every topic replicated
three times with `min.insync.replicas=2`; clients authenticate with SASL/SCRAM-SHA-512 and may do
only what an ACL grants their principal (GRANTS below); infra itself is the one super user. The
passwords are made on first start (secrets module) into `<state>/cluster/secrets/`, one JSON file
of client settings per principal, mode 0600; a service finds its own through
MARKETLOG_KAFKA_SECURITY (services/common/kafka.py). See docs/cluster.md.

Ports: broker i (0, 1, 2) listens on MARKETLOG_CLUSTER_PORT + 2i (default 19100, 19102, 19104)
and its controller on the next port up (19101, 19103, 19105).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from services.common.config import ROOT, Settings
from services.common.kafka import admin_config

from .local import (
    KAFKA_DIR,
    STATE,
    InfraError,
    LocalKafka,
    LocalPostgres,
    _alive,
    port_open,
    stop_pid,
    wait_for,
)

ADMIN = "marketlog-admin"  # infra's own principal: formats, provisions, grants; the super user
MECHANISM = "SCRAM-SHA-512"
ITERATIONS = 8192
# a small heap per broker: three JVMs share two cores with every service (MARKETLOG_KAFKA_JVM
# overrides it, as for the single broker)
CLUSTER_JVM = "-Xms512m -Xmx512m -server -XX:+UseZGC"


@dataclass(frozen=True)
class Grants:
    """What one service's principal may do, in topic roles (infra/topics.toml) and names that
    get the topic prefix in front. READ and WRITE imply DESCRIBE."""

    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    creates: tuple[str, ...] = ()  # topics the service declares itself (faust's internal one)
    groups: tuple[str, ...] = ("unused",)  # a group-less consumer's group.id (common/kafka.py)
    transactional_ids: tuple[str, ...] = ()  # prefixes: "<name>-<instance>" per processor


ANALYTICS_LEADER = "analytics-__assignor-__leader"

# Each processor reads its input and its snapshots and writes its outputs and snapshots inside
# its transactions (common/processor.py); the gateway appends commands and tails the decisions;
# the projector only reads. Nothing else is granted: no principal but infra's creates, deletes or
# alters anything.
GRANTS: dict[str, Grants] = {
    "gateway": Grants(reads=("account.events", "market.events"), writes=("ledger.commands",)),
    "ledger": Grants(
        reads=("ledger.commands", "ledger.snapshots"),
        writes=("account.events", "match.commands", "ledger.snapshots"),
        groups=("ledger", "unused"),
        transactional_ids=("ledger-",),
    ),
    "matcher": Grants(
        reads=("match.commands", "matcher.snapshots"),
        writes=("market.events", "ledger.commands", "matcher.snapshots"),
        groups=("matcher", "unused"),
        transactional_ids=("matcher-",),
    ),
    "engine": Grants(
        reads=("ledger.commands", "engine.snapshots"),
        writes=("account.events", "market.events", "engine.snapshots"),
        groups=("engine", "unused"),
        transactional_ids=("engine-",),
    ),
    "projector": Grants(
        reads=("account.events", "market.events", "analytics.candles"),
        groups=("projector", "unused"),
    ),
    # the faust app (services/analytics): its state and candles in its transactions; faust itself
    # declares and uses the leader assignor's topic, named after the app id (its group)
    "analytics": Grants(
        reads=("market.events", "analytics.state", ANALYTICS_LEADER),
        writes=("analytics.candles", "analytics.state", ANALYTICS_LEADER),
        creates=(ANALYTICS_LEADER,),
        groups=("analytics", "unused"),
        transactional_ids=("analytics-",),
    ),
}


def principal(service: str) -> str:
    return f"marketlog-{service}"


def acl_bindings(service: str, grants: Grants, prefix: str = "") -> list[AclBinding]:
    """The ACLs of one service's principal, for topics named with `prefix`."""
    user = f"User:{principal(service)}"

    def allow(kind: ResourceType, name: str, op: AclOperation, pattern=ResourcePatternType.LITERAL):
        return AclBinding(kind, prefix + name, pattern, user, "*", op, AclPermissionType.ALLOW)

    topic, group, txn = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    return (
        [allow(topic, name, AclOperation.READ) for name in grants.reads]
        + [allow(topic, name, AclOperation.WRITE) for name in grants.writes]
        + [allow(topic, name, AclOperation.CREATE) for name in grants.creates]
        + [allow(group, name, AclOperation.READ) for name in grants.groups]
        + [
            allow(txn, name, AclOperation.WRITE, ResourcePatternType.PREFIXED)
            for name in grants.transactional_ids
        ]
    )


def _write_secret(path: Path, text: str) -> None:
    """Create path with mode 0600 (never readable by others, not even for a moment)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def salted_scram(password: str, salt: bytes, iterations: int = ITERATIONS) -> str:
    """A SCRAM-SHA-512 credential in kafka-storage's form: the salted password (RFC 5802's
    Hi() = PBKDF2-HMAC), so the password itself never appears on a command line."""
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return (
        f"{MECHANISM}=[name={ADMIN},iterations={iterations},"
        f'salt="{b64(salt).decode()}",saltedpassword="{b64(salted).decode()}"]'
    )


class ClusterNode(LocalKafka):
    """One combined broker+controller of the cluster (LocalKafka's java, pid file and stop)."""

    def __init__(self, home: Path, port: int, controller_port: int, node_id: int, voters: str):
        super().__init__(home, port, controller_port)
        self.node_id, self.voters = node_id, voters
        self.admin_password = self.cluster_id = ""  # set by Cluster.start

    def configure(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        text = (
            (KAFKA_DIR / "cluster.properties")
            .read_text()
            .format(
                node_id=self.node_id,
                voters=self.voters,
                port=self.port,
                controller_port=self.controller_port,
                admin=ADMIN,
                admin_password=self.admin_password,
                data_dir=self.home / "data",
            )
        )
        props.unlink(missing_ok=True)
        _write_secret(props, text)  # holds the super user's password
        if not (self.home / "data" / "meta.properties").exists():
            scram = salted_scram(self.admin_password, os.urandom(32))
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={self.cluster_id}",
                    "-c",
                    str(props),
                    "--add-scram",
                    scram,
                    "--ignore-formatted",
                    heap="-Xmx256m",
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        return props

    def launch(self) -> None:
        if self.running():
            return
        if port_open(self.port) or port_open(self.controller_port):
            raise InfraError(f"port {self.port} or {self.controller_port} is taken")
        props = self.configure()
        log = open(self.home / "kafka.log", "ab")  # noqa: SIM115 - handed to the child
        heap = os.environ.get("MARKETLOG_KAFKA_JVM", CLUSTER_JVM)
        proc = subprocess.Popen(
            self._java("kafka.Kafka", str(props), heap=heap),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid_file.write_text(str(proc.pid))

    def kill(self) -> None:
        """SIGKILL, no goodbye (the broker-loss tests)."""
        pid = int(self.pid_file.read_text())
        os.killpg(pid, 9)
        self.pid_file.unlink()
        wait_for(lambda: not _alive(pid), f"broker {self.node_id} to die", 30)


class Cluster:
    """Three brokers under `home` with their secrets; `start` is idempotent."""

    def __init__(self, home: Path, base_port: int = 19100, size: int = 3) -> None:
        self.home = home
        self.secrets = home / "secrets"
        ports = [(base_port + 2 * i, base_port + 2 * i + 1) for i in range(size)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        self.nodes = [
            ClusterNode(
                node_id=i + 1,
                voters=voters,
                home=home / f"broker-{i + 1}",
                port=p,
                controller_port=c,
            )
            for i, (p, c) in enumerate(ports)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    # -- secrets ----------------------------------------------------------------------------
    def credentials(self, service: str | None) -> Path:
        """The client-settings file of a service's principal (None: infra's own): JSON of
        librdkafka settings with a password made on first use, mode 0600."""
        user = principal(service) if service else ADMIN
        path = self.secrets / f"{user}.json"
        if not path.exists():
            settings = {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": MECHANISM,
                "sasl.username": user,
                "sasl.password": secrets.token_urlsafe(24),
            }
            _write_secret(path, json.dumps(settings) + "\n")
        return path

    def password(self, service: str | None) -> str:
        return json.loads(self.credentials(service).read_text())["sasl.password"]

    def settings(self, service: str | None = None, **kw) -> Settings:
        """Settings of a client of this cluster as `service` (None: infra's own principal)."""
        return Settings(
            kafka=self.bootstrap,
            kafka_security=str(self.credentials(service)),
            kafka_mode="cluster",
            **kw,
        )

    def _cluster_id(self) -> str:
        path = self.home / "cluster.id"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))
        return path.read_text().strip()

    # -- lifecycle --------------------------------------------------------------------------
    def running(self) -> list[bool]:
        return [n.running() for n in self.nodes]

    def start(self, timeout: float = 120.0) -> None:
        """Every node started (all at once: a controller waits for a quorum of its voters),
        then until every broker answers and the cluster counts all of them."""
        admin_password, cluster_id = self.password(None), self._cluster_id()
        for node in self.nodes:
            node.admin_password, node.cluster_id = admin_password, cluster_id
            node.launch()
        wait_for(self.healthy, f"{len(self.nodes)} brokers on {self.bootstrap}", timeout)

    def start_node(self, index: int, timeout: float = 90.0) -> None:
        self.nodes[index].launch()
        wait_for(self.healthy, f"broker {index + 1} to rejoin", timeout)

    def healthy(self) -> bool:
        for node in self.nodes:
            if node.pid_file.exists() and not node.running():
                raise InfraError(f"broker {node.node_id} exited; see {node.home}/kafka.log")
        try:
            admin = AdminClient(admin_config(self.settings(), log_level=0))  # quiet while down
            brokers = admin.describe_cluster(request_timeout=3).result().nodes
        except Exception:
            return False
        return len(brokers) == len(self.nodes)

    def _admin(self, settings: Settings | None = None) -> AdminClient:
        return AdminClient(admin_config(settings or self.settings()))

    def grant(self, services: Iterable[str] = GRANTS, prefix: str = "") -> None:
        """Each service's SCRAM user (made on first grant) and its ACLs; idempotent."""
        services = list(services)
        admin = self._admin()
        users = [principal(s) for s in services]
        described = admin.describe_user_scram_credentials(users)
        missing = []
        for user, future in described.items():
            try:
                future.result()
            except Exception:  # RESOURCE_NOT_FOUND: a user not made yet
                missing.append(user)
        if missing:
            info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS)
            upserts = [
                UserScramCredentialUpsertion(principal(s), info, self.password(s).encode())
                for s in services
                if principal(s) in missing
            ]
            for future in admin.alter_user_scram_credentials(upserts).values():
                future.result()
        bindings = [b for s in services for b in acl_bindings(s, GRANTS[s], prefix)]
        for future in admin.create_acls(bindings, request_timeout=30).values():
            future.result()

    def stop(self) -> list[str]:
        """All brokers at once: stopped one by one, the last ones would wait for a quorum."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            stopped = list(pool.map(lambda n: n.stop(), self.nodes))
        return [f"broker {n.node_id}" for n, s in zip(self.nodes, stopped, strict=True) if s]


# -- make cluster: brokers + topics + PostgreSQL + every service --------------------------------

CLUSTER = Cluster(STATE / "cluster", int(os.environ.get("MARKETLOG_CLUSTER_PORT", "19100")))
POSTGRES = LocalPostgres(
    STATE / "cluster" / "postgres", int(os.environ.get("MARKETLOG_PG_PORT", "55432"))
)
RUN_DIR = STATE / "cluster" / "run"
LOGS = STATE / "cluster" / "logs"


def _service_names() -> list[str]:
    from .__main__ import procfile_names

    return procfile_names()


def _service_env(name: str) -> dict[str, str]:
    from .__main__ import service_env

    env = service_env()
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=CLUSTER.bootstrap,
        DATABASE_URL=POSTGRES.url,
        MARKETLOG_RUN_DIR=str(RUN_DIR),
        MARKETLOG_KAFKA_MODE="cluster",
    )
    env.pop("MARKETLOG_KAFKA_SECURITY", None)
    if name in GRANTS:  # the quote server talks to no broker
        env["MARKETLOG_KAFKA_SECURITY"] = str(CLUSTER.credentials(name))
    return env


def start_services(names: list[str], timeout: float = 120.0) -> None:
    """Each service as its own process group with its own principal (honcho gives all one env)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name in names:
        pid_file = RUN_DIR / f"{name}.pid"
        if pid_file.exists() and _alive(int(pid_file.read_text() or 0)):
            continue
        for ready in RUN_DIR.glob(f"{name}-*.ready"):
            ready.unlink()
        with open(LOGS / f"{name}.log", "ab") as log:
            procs[name] = subprocess.Popen(
                # named "python -m services.<name> serve" as honcho's are (bench/steady.py)
                ["python", "-m", f"services.{name}", "serve"],
                executable=sys.executable,
                env=_service_env(name),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (RUN_DIR / f"{name}.pid").write_text(str(procs[name].pid))

    def live() -> bool:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise InfraError(f"{name} exited with {proc.returncode}; see {LOGS}/{name}.log")
        return all(any(RUN_DIR.glob(f"{n}-*.ready")) for n in procs)

    wait_for(live, "services to be live", timeout)


def up() -> int:
    from .stack import KAFKA

    if KAFKA.running():
        raise InfraError("the single broker of `make up` is running: `make down` first")
    from services.common.topics import provision

    began = time.monotonic()
    names = _service_names()
    try:
        CLUSTER.start()
        CLUSTER.grant()
        created = provision(CLUSTER.settings())
        POSTGRES.start()
        start_services(names)
    except BaseException:  # half a cluster helps nobody: stop what started, then say why
        down()
        raise
    print(
        f"Marketlog cluster is up in {time.monotonic() - began:.0f} s"
        f" (created topics: {', '.join(created) or 'none'})\n"
        f"  Kafka        {CLUSTER.bootstrap}   (SASL/SCRAM-SHA-512, secrets in {CLUSTER.secrets})\n"
        f"  PostgreSQL   {POSTGRES.url}\n"
        f"  services     {', '.join(names)}   (logs in {LOGS})"
    )
    return 0


def down() -> int:
    stopped = [p.stem for p in sorted(RUN_DIR.glob("*.pid")) if stop_pid(p)]
    for ready in RUN_DIR.glob("*.ready"):
        ready.unlink()
    stopped += CLUSTER.stop()
    if POSTGRES.stop():
        stopped.append("PostgreSQL")
    print("stopped: " + (", ".join(stopped) or "nothing was running"))
    return 0


def status() -> int:
    for node in CLUSTER.nodes:
        state = "running" if node.running() else "stopped"
        where = f"{node.bootstrap} (controller {node.controller_port})"
        print(f"broker {node.node_id}    {state}  {where}")
    print(f"PostgreSQL  {'running' if POSTGRES.running() else 'stopped'}  {POSTGRES.url}")
    for name in _service_names():
        print(f"{name:<11} {'live' if any(RUN_DIR.glob(f'{name}-*.ready')) else 'stopped'}")
    return 0


COMMANDS = {"up": up, "down": down, "status": status}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    try:
        sys.exit(COMMANDS[sys.argv[1]]())
    except InfraError as exc:
        sys.exit(f"error: {exc}")
