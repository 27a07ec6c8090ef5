"""`python -m infra {run,up,down,status,topics}`: start and stop Marketlog on this machine.

run     Kafka + PostgreSQL + topics, then every service of the Procfile in the foreground
        (honcho); Ctrl-C stops everything.
up      the same in the background; returns once every process says it is live.
down    stops whatever `up` or `run` started; safe to repeat.
servers only Kafka + PostgreSQL + topics, in the background (for development and tests).
status  what is running and where, then the operator dashboard's figures.
topics  create or check the topics (infra/topics.toml) on the configured broker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .local import ROOT, STATE, InfraError, port_open, stop_pid
from .stack import KAFKA, POSTGRES, topology_services

RUN_DIR = STATE / "run"
SERVICES_PID = STATE / "services.pid"
PROCFILE = ROOT / "Procfile"
HONCHO = Path(sys.executable).parent / "honcho"


ADMIN_KEY = STATE / "admin.key"


def admin_key() -> str:
    """The gateway's admin key: MARKETLOG_ADMIN_KEY, else .state/admin.key (made once, 0600)."""
    if os.environ.get("MARKETLOG_ADMIN_KEY"):
        return os.environ["MARKETLOG_ADMIN_KEY"]
    if not ADMIN_KEY.exists():
        import secrets

        ADMIN_KEY.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(ADMIN_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    return ADMIN_KEY.read_text().strip()


def admin_key_source() -> str:
    return "$MARKETLOG_ADMIN_KEY" if os.environ.get("MARKETLOG_ADMIN_KEY") else str(ADMIN_KEY)


def service_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=KAFKA.bootstrap,
        # no role, no password: the Procfile names the role of each service that uses PostgreSQL
        DATABASE_URL=POSTGRES.base_url,
        MARKETLOG_DB_SECRETS=str(POSTGRES.secrets),
        MARKETLOG_RUN_DIR=str(RUN_DIR),
        PYTHONPATH=str(ROOT),
        MARKETLOG_ADMIN_KEY=admin_key(),
        # the Procfile's `python` is this interpreter (the venv's), not whatever PATH finds first
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    return env


def procfile_names() -> list[str]:
    """The Procfile's services of the configured topology (infra/stack.py: topology_services)."""
    lines = PROCFILE.read_text().splitlines()
    names = [
        line.split(":", 1)[0].strip() for line in lines if line.strip() and not line.startswith("#")
    ]
    return topology_services(names)


def listening() -> str:
    from services.common.config import Settings

    settings = Settings()
    http = os.environ.get("MARKETLOG_HTTP_PORT", "8080")
    xml = os.environ.get("MARKETLOG_XML_PORT", "12345")
    return "\n".join(
        [
            f"  Kafka        {KAFKA.bootstrap}   (topics prefix {settings.topic_prefix!r})",
            f"  PostgreSQL   {POSTGRES.url}",
            f"  XML/TCP      127.0.0.1:{xml}",
            f"  day trading  {settings.daytrade_host}:{settings.daytrade_port}   (line protocol;"
            f" DUMPLOG files in {settings.dump_dir})",
            f"  HTTP API     http://127.0.0.1:{http}/docs",
            f"  dashboard    http://127.0.0.1:{http}/dashboard   (admin key; metrics on"
            " 127.0.0.1:9400-9404 by default: docs/operations.md)",
            f"  private      127.0.0.1:{os.environ.get('MARKETLOG_PRIVATE_PORT', '7001')}   (JSON)",
            f"  public       127.0.0.1:{os.environ.get('MARKETLOG_PUBLIC_PORT', '7002')}   (JSON)",
            f"  quotes       {settings.quote_host}:{settings.quote_port}   (legacy quote server)",
            f"  admin key    {admin_key_source()}",
            f"  state        {STATE}   (make clean drops it)",
        ]
    )


def start_infra() -> None:
    KAFKA.start()
    POSTGRES.start()
    os.environ.update(KAFKA_BOOTSTRAP_SERVERS=KAFKA.bootstrap, DATABASE_URL=POSTGRES.url)
    from services.common.config import Settings
    from services.common.topics import provision
    from services.projector import schema

    # as the migrator: the projector's role may write rows but not change the schema
    with schema.connect(POSTGRES.url) as conn:
        migrated = schema.migrate(conn)
    if migrated:
        print("migrations applied:", ", ".join(migrated))

    created = provision(Settings())
    if created:
        print("created topics:", ", ".join(created))


def _reset_run_dir() -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    for ready in RUN_DIR.glob("*.ready"):
        ready.unlink()


def run() -> int:
    # Ctrl-C must stop everything even when started with SIGINT ignored (a background job of a
    # script inherits that): honcho then exits 130 or 0, whichever of it and a service saw it first
    signal.signal(signal.SIGINT, signal.default_int_handler)
    start_infra()
    _reset_run_dir()
    print("Marketlog is starting; Ctrl-C stops everything.\n" + listening(), flush=True)
    proc = subprocess.Popen(
        [str(HONCHO), "-f", str(PROCFILE), "start", *procfile_names()], env=service_env(), cwd=ROOT
    )
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached honcho too: it stops the services
        proc.wait()
        return 0
    finally:
        down()


def up(timeout: float = 120.0) -> int:
    start_infra()
    if SERVICES_PID.exists():
        print("services already running\n" + listening())
        return 0
    _reset_run_dir()
    log = open(STATE / "services.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [str(HONCHO), "-f", str(PROCFILE), "start", *procfile_names()],
        env=service_env(),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    SERVICES_PID.write_text(str(proc.pid))
    names = procfile_names()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            down()
            raise InfraError(f"services exited with {proc.returncode}; see {STATE}/services.log")
        ready = {p.name.rsplit("-", 1)[0] for p in RUN_DIR.glob("*.ready")}
        if set(names) <= ready:
            print("Marketlog is up: " + ", ".join(names) + "\n" + listening())
            return 0
        time.sleep(0.2)
    down()
    raise InfraError(f"services not live after {timeout:.0f}s; see {STATE}/services.log")


def down() -> int:
    stopped = []
    if stop_pid(SERVICES_PID):
        stopped.append("services")
    if KAFKA.stop():
        stopped.append("Kafka")
    if POSTGRES.stop():
        stopped.append("PostgreSQL")
    _reset_run_dir()
    print("stopped: " + (", ".join(stopped) or "nothing was running"))
    return 0


def status() -> int:
    print(f"Kafka       {'running' if KAFKA.running() else 'stopped'}  {KAFKA.bootstrap}")
    print(f"PostgreSQL  {'running' if POSTGRES.running() else 'stopped'}  {POSTGRES.url}")
    for name in procfile_names():
        ready = list(RUN_DIR.glob(f"{name}-*.ready"))
        print(f"{name:<11} {'live' if ready else 'stopped'}")
    for port in (KAFKA.port, POSTGRES.port):
        print(f"port {port}: {'open' if port_open(port) else 'closed'}")
    from .figures_view import show  # the operator dashboard's figures (docs/operations.md)

    show()
    return 0


def topics() -> int:
    from services.common.config import Settings
    from services.common.topics import provision

    print("created:", ", ".join(provision(Settings())) or "none (all exist and match the spec)")
    return 0


def servers() -> int:
    start_infra()
    print("Kafka and PostgreSQL are up (no services):\n" + listening())
    return 0


COMMANDS = {
    "servers": servers,
    "run": run,
    "up": up,
    "down": down,
    "status": status,
    "topics": topics,
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    try:
        sys.exit(COMMANDS[sys.argv[1]]())
    except InfraError as exc:
        sys.exit(f"error: {exc}")
