"""Settings from the environment, with the defaults `make run` uses."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


# "split": the ledger and the matcher, three hops per order, partitions scale out; "engine": both
# cores in one processor, one hop, one partition (docs/architecture.md, "Two topologies")
TOPOLOGIES = ("split", "engine")


def topology() -> str:
    found = _env("MARKETLOG_TOPOLOGY", "split")
    if found not in TOPOLOGIES:
        raise ValueError(f"MARKETLOG_TOPOLOGY={found!r}: one of {', '.join(TOPOLOGIES)}")
    return found


def _database_url() -> str:
    """DATABASE_URL as given; or, with MARKETLOG_DB_ROLE (or DATABASE_URL unset: the local stack's
    migrator), that PostgreSQL role, whose password libpq reads from the password file
    MARKETLOG_DB_SECRETS/<role>.pgpass that infra/local.py made: never in the environment, the
    arguments or a log (docs/reliability.md, "Who may connect")."""
    given = os.environ.get("DATABASE_URL")
    role = os.environ.get("MARKETLOG_DB_ROLE") or ("" if given else "migrator")
    if not role:
        return given or ""
    from psycopg.conninfo import make_conninfo

    secrets = Path(_env("MARKETLOG_DB_SECRETS", str(ROOT / ".state" / "secrets")))
    url = given or "postgresql://127.0.0.1:55432/marketlog"
    return make_conninfo(url, user=role, passfile=str(secrets / f"{role}.pgpass"))


def _default_partitions() -> int:
    return int(_env("MARKETLOG_PARTITIONS", "1" if topology() == "engine" else "4"))


@dataclass(frozen=True)
class Settings:
    kafka: str = field(default_factory=lambda: _env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"))
    database_url: str = field(default_factory=_database_url)
    topic_prefix: str = field(default_factory=lambda: _env("MARKETLOG_TOPIC_PREFIX", ""))
    # cluster mode (docs/cluster.md): a JSON file of this service's SASL client settings (mode
    # 0600, made by infra/cluster.py) and the topics' replication ("single" or "cluster"); unset,
    # the clients speak plaintext to the one local broker
    kafka_security: str = field(default_factory=lambda: _env("MARKETLOG_KAFKA_SECURITY", ""))
    kafka_mode: str = field(default_factory=lambda: _env("MARKETLOG_KAFKA_MODE", "single"))
    partitions: int = field(default_factory=_default_partitions)
    instance: str = field(default_factory=lambda: _env("MARKETLOG_INSTANCE", "0"))
    run_dir: Path = field(
        default_factory=lambda: Path(_env("MARKETLOG_RUN_DIR", str(ROOT / ".state" / "run")))
    )
    # the simulated legacy quote server (services/quotes); the gateway connects to host:port
    quote_host: str = field(default_factory=lambda: _env("MARKETLOG_QUOTE_HOST", "127.0.0.1"))
    quote_port: int = field(default_factory=lambda: int(_env("MARKETLOG_QUOTE_PORT", "4444")))
    quote_seed: str = field(default_factory=lambda: _env("MARKETLOG_QUOTE_SEED", "marketlog"))
    quote_delay_ms: int = field(default_factory=lambda: int(_env("MARKETLOG_QUOTE_DELAY_MS", "0")))
    quote_bucket_ms: int = field(
        default_factory=lambda: int(_env("MARKETLOG_QUOTE_BUCKET_MS", "1000"))
    )
    # the gateway's day-trading surfaces (docs/daytrading.md): the line protocol's address, how
    # long a quote is reused per symbol, how often armed triggers' symbols are ticked, where
    # DUMPLOG writes its files
    daytrade_host: str = field(default_factory=lambda: _env("MARKETLOG_DAYTRADE_HOST", "127.0.0.1"))
    daytrade_port: int = field(
        default_factory=lambda: int(_env("MARKETLOG_DAYTRADE_PORT", "12346"))
    )
    quote_cache_ms: int = field(
        default_factory=lambda: int(_env("MARKETLOG_QUOTE_CACHE_MS", "60000"))
    )
    tick_ms: int = field(default_factory=lambda: int(_env("MARKETLOG_TICK_MS", "1000")))
    dump_dir: Path = field(
        default_factory=lambda: Path(_env("MARKETLOG_DUMP_DIR", str(ROOT / ".state" / "dumps")))
    )

    def topic(self, role: str) -> str:
        """The real name of a topic role from infra/topics.toml, e.g. 'ledger.commands'."""
        return self.topic_prefix + role

    def mark_ready(self, name: str) -> Path:
        """Tell `make up` this process is live: it waits for one ready file per process."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / f"{name}-{self.instance}.ready"
        path.write_text(str(os.getpid()))
        return path
