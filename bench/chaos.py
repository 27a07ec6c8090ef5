"""Chaos under load (issue 19): faults at seeded moments while clients trade on every surface,
then the books.

    python -m bench.chaos [--seconds 120] [--faults 8] [--seed 1] [--rate 100]
                          [--cluster] [--instances 2]                              (make chaos)

PostgreSQL and a broker of its own (bench/env.py), or with ``--cluster`` three KRaft brokers as
`make cluster` runs them (RF 3, min.insync.replicas 2, SASL/SCRAM, each service its own principal
and ACLs: bench/chaos_cluster.py); the split topology (ledger, matcher, projector, gateway; with
``--instances 2`` two of each processor, ``ledger@0``/``ledger@1``, sharing the partitions); and
closed-loop clients on XML, HTTP and the private JSON-line channel (bench/chaos_load.py), one
account each, and day traders on the line protocol (bench/chaos_daytrade.py), one user each,
offering about ``rate`` requests per second (orders that cross and fill; day-trading lines). While
they trade, a seeded schedule of faults: kill -9 of a service instance (restarted after a short
down time), SIGSTOP of a processor past its consumer session timeout (10 s) then SIGCONT, and
kill -9 of a broker restarted on its data: the only broker (everything waits for it), or on the
cluster the one leading the most partitions, down 10-20 s while the other two serve. A supervisor
restarts any service that exits by itself and counts it. The clients reconnect when the gateway
goes away; a request whose answer never came is "unknown", never retried.

At the end, per surface, against what its clients were told (``Told``): every order told open (XML
``<opened>``, HTTP 201, a NEW report) is in the log and the projection once (``lost`` counts those
missing), no account has more orders in the log than it sent requests, no command is decided twice
and no client order id names two orders (``duplicated``); executions and trades are distinct; the
day traders' lines and books against the log and the projection (bench/chaos_daytrade.py); then the
projector's conservation audit, each processor's ``verify`` (the log replays byte for byte), a
rebuild of the projection equal to the incremental one, and an L3 replica equal to the matcher's
checksums. Per fault: when it hit, what, the seconds until every surface had an order sent after it
answered again (``recovery_s``, and per surface) and the worst latency of the orders in flight in
that window (``spike_ms``). Results: bench/results/<date>-chaos[-cluster].json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import chaos_daytrade
from bench.chaos_cluster import BrokerFaults, ClusterBrokerFaults, chaos_cluster_env
from bench.chaos_daytrade import DayTold
from bench.chaos_load import SURFACES, Ports, Told, load, open_accounts
from bench.cluster_env import ClusterEnv
from infra.stack import ServiceProcs, free_port, free_ports, settings_env
from services.common.codec import Codec
from services.common.config import Settings
from services.common.kafka import consumer_config
from services.common.reader import end_of, read_topic
from services.projector import schema  # the projection's own tables, read as the tests do
from services.projector.schema import connect

SESSION_TIMEOUT_S = 10.0  # services/common/kafka.py session.timeout.ms
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Fault:
    kind: str  # kill | pause | broker
    target: str
    at_s: float  # since the load started
    down_s: float
    recovery_s: float | None = None  # until every surface answered an order sent after it
    spike_ms: float | None = None
    recovery_by_surface: dict[str, float | None] = field(default_factory=dict)


def topology(instances: int) -> tuple[list[str], list[str]]:
    """The services (processor instances named ``ledger@i`` when there are several) and the
    processors among them."""
    processors = [
        f"{p}@{i}" if instances > 1 else p for p in ("ledger", "matcher") for i in range(instances)
    ]
    return ["projector", *processors, "gateway"], processors


def schedule(
    rng: random.Random,
    seconds: float,
    count: int,
    broker: bool,
    instances: int = 1,
    cluster: bool = False,
) -> list[Fault]:
    """`count` faults spread over the middle of the run: kills of every service instance in a
    seeded order, one pause, and (if `broker`) one broker kill; their order and moments from the
    seed. A cluster's broker stays down 10-20 s (the others serve meanwhile)."""
    services, processors = topology(instances)
    victims = rng.sample(services, len(services))
    kinds: list[tuple[str, str]] = [("pause", rng.choice(processors))]
    if broker:
        kinds.append(("broker", "broker" if cluster else "kafka"))
    while len(kinds) < count:
        kinds.append(("kill", victims[len(kinds) % len(victims)]))
    rng.shuffle(kinds)
    gap = seconds * 0.8 / len(kinds)
    faults = []
    for n, (kind, target) in enumerate(kinds):
        at = seconds * 0.1 + n * gap + rng.uniform(0, gap * 0.3)
        if kind == "pause":
            down = SESSION_TIMEOUT_S + 2
        elif kind == "broker" and cluster:
            down = rng.uniform(10.0, 20.0)
        else:
            down = rng.uniform(0.5, 3.0)
        faults.append(Fault(kind, target, round(at, 2), round(down, 2)))
    return faults


class Stack:
    """The services as subprocesses, with a supervisor restarting what exits by itself."""

    def __init__(
        self,
        settings: Settings,
        logs: Path,
        ports: Ports,
        services: list[str],
        brokers: BrokerFaults,
        credentials: dict[str, str] | None = None,
    ) -> None:
        self.settings, self.services, self.brokers = settings, services, brokers
        self.procs = ServiceProcs(
            settings,
            logs,
            credentials=credentials,
            MARKETLOG_XML_PORT=str(ports.xml),
            MARKETLOG_HTTP_PORT=str(ports.http),
            MARKETLOG_PRIVATE_PORT=str(ports.private),
            MARKETLOG_PUBLIC_PORT=str(free_port()),
            MARKETLOG_DAYTRADE_PORT=str(ports.daytrade),
            MARKETLOG_QUOTE_PORT=str(ports.quotes),
            MARKETLOG_DUMP_DIR=str(logs / "dumps"),
            MARKETLOG_ADMIN_KEY=ports.admin_key,
            MARKETLOG_METRICS_PORT="0",
            MARKETLOG_XML_RATE="1000000",
            MARKETLOG_XML_BURST="1000000",
            MARKETLOG_TOPOLOGY="split",
            MARKETLOG_LEDGER_SNAPSHOT_RECORDS="500",
            MARKETLOG_MATCHER_SNAPSHOT_RECORDS="500",
        )
        self.lock = threading.Lock()
        self.down: set[str] = set()  # taken down on purpose, not to be restarted yet
        self.restarts: Counter = Counter()  # exits the supervisor restarted
        self.stuck: list[str] = []  # services that did not stop on SIGTERM
        self.stopping = threading.Event()

    def start(self) -> None:
        self.procs.start(*self.services, timeout=180)
        threading.Thread(target=self._supervise, daemon=True).start()

    def _supervise(self) -> None:
        while not self.stopping.wait(0.5):
            with self.lock:
                for name, proc in list(self.procs.procs.items()):
                    if name not in self.down and proc.poll() is not None:
                        self.restarts[name] += 1
                        self._start(name)

    def _start(self, name: str) -> None:
        # exited again while starting: the supervisor tries on its next turn
        with contextlib.suppress(RuntimeError, TimeoutError):
            self.procs.start(name, timeout=180)

    def inflict(self, fault: Fault, rng: random.Random, started: float) -> None:
        """Blocking: the fault, its down time, the way back. ``at_s`` becomes the moment it hit
        (it may start late: the supervisor holds the lock while it restarts a service). A broker
        fault names the broker it hit (the cluster's is chosen when it strikes)."""

        def hit() -> None:
            fault.at_s = round(time.monotonic() - started, 2)

        if fault.kind == "broker":
            fault.target = self.brokers.pick(self.settings, rng)
            self.brokers.kill(fault.target)
            hit()
            time.sleep(fault.down_s)
            self.brokers.restart(fault.target)
            return
        with self.lock:
            self.down.add(fault.target)
        if fault.kind == "kill":
            self.procs.kill(fault.target)
            hit()
            time.sleep(fault.down_s)
            with self.lock:
                self._start(fault.target)
        else:
            self.procs.signal(fault.target, signal.SIGSTOP)
            hit()
            time.sleep(fault.down_s)
            self.procs.signal(fault.target, signal.SIGCONT)
        with self.lock:
            self.down.discard(fault.target)

    def quiesce(self) -> None:
        """Stop the supervisor, then every service but the projector."""
        self.stopping.set()
        with self.lock:
            others = [n for n in self.services if n != "projector"]
            for name in others:
                if self.procs.procs[name].poll() is None:
                    self.procs.procs[name].terminate()
            for name in others:
                self._wait_stopped(name)

    def _wait_stopped(self, name: str) -> None:
        """A service that does not stop on SIGTERM in 60 s is a finding: its stacks go to its log
        (SIGUSR1, services/common/serve.py), then it is killed."""
        proc = self.procs.procs[name]
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            self.stuck.append(name)
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
            proc.kill()
            proc.wait(10)

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            self.procs.stop_all()


def measure(faults: list[Fault], told: dict[str, Told], started: float) -> None:
    """Per fault and surface: seconds from it until an order sent after it is answered; the
    fault's recovery is the slowest surface's. Its spike: the worst latency of the orders in
    flight at the fault or sent from it until then, on any surface."""
    for fault in faults:
        hit = started + fault.at_s
        backs = {}
        for surface, record in told.items():
            after = sorted((s, a) for s, a, ok in record.answers if ok and s >= hit)
            backs[surface] = after[0][1] if after else None
            fault.recovery_by_surface[surface] = round(after[0][1] - hit, 2) if after else None
        if None in backs.values():
            continue
        back = max(backs.values())
        fault.recovery_s = round(back - hit, 2)
        window = [a - s for r in told.values() for s, a, _ in r.answers if s <= back and a >= hit]
        fault.spike_ms = round(max(window, default=0.0) * 1000, 1)


# the records that decide a command (each command is decided by exactly one)
DECISIONS = {"OrderAccepted", "CommandRejected", "AccountCreated", "SharesIssued"}
DECISIONS |= {"DayTradeDecided"}


def books(settings: Settings, told: dict[str, Told | DayTold]) -> dict:
    """Lost and duplicated against each surface's told record; distinct executions and trades."""
    codec = Codec()
    decided: Counter = Counter()
    placed: Counter = Counter()
    day_lines: Counter = Counter()  # (user, txn) -> DayTradeDecided records
    day_ok: set[tuple[str, int]] = set()
    for record in read_topic(settings, settings.topic("account.events"), idle_timeout=3.0):
        name, event = codec.decode(record.value())
        kind = name.rsplit(".", 1)[1]
        if kind in DECISIONS:
            decided[event["envelope"]["command_id"]] += 1
        if kind == "OrderAccepted":
            placed[event["envelope"]["key"]] += 1  # the account
        if kind == "DayTradeDecided":
            day_lines[(event["user"], event["txn"])] += 1
            if event["ok"]:
                day_ok.add((event["user"], event["txn"]))
    with connect(settings.database_url) as conn:
        day_projected = chaos_daytrade.projection_of(conn)
        rows = dict(conn.execute("SELECT order_id, account_id FROM orders").fetchall())
        by_client = Counter(
            dict(
                ((a, c), n)
                for a, c, n in conn.execute(
                    "SELECT account_id, client_order_id, count(*) FROM orders"
                    " WHERE client_order_id <> '' GROUP BY 1, 2"
                )
            )
        )
        executions = conn.execute(
            "SELECT count(*), count(DISTINCT (order_id, seq)) FROM executions"
        ).fetchone()
        trades = conn.execute(
            "SELECT count(*), count(DISTINCT (symbol, seq)) FROM trades"
        ).fetchone()
    surfaces = {}
    for surface, record in told.items():
        if isinstance(record, DayTold):
            surfaces[surface] = chaos_daytrade.check(record, day_lines, day_ok, day_projected)
            continue
        missing = [oid for oid, account in record.opened.items() if rows.get(oid) != account]
        missing += [f"{a}/{c}" for a, c in record.opened_client if by_client[(a, c)] == 0]
        over = {a: placed[a] - n for a, n in record.sent.items() if placed[a] > n}
        named_twice = [f"{a}/{c}" for (a, c), n in by_client.items() if n > 1 and a in record.sent]
        surfaces[surface] = {
            "requests": sum(record.sent.values()),
            "told_open": sum(1 for *_, ok in record.answers if ok),
            "unknown": record.unknown,
            "refused": dict(record.errors.most_common(5)),
            "lost": len(missing),
            "lost_orders": missing[:20],
            "accounts_with_more_orders_than_requests": over,
            "client_order_ids_naming_two_orders": named_twice[:20],
            "duplicated": sum(over.values()) + len(named_twice),
        }
    twice = [cid for cid, n in decided.items() if n > 1]
    return {
        "lost": sum(s["lost"] for s in surfaces.values()),
        "duplicated": len(twice)
        + sum(s["duplicated"] for s in surfaces.values())
        + (executions[0] - executions[1]),
        "surfaces": surfaces,
        "commands_decided_twice": twice[:20],
        "executions": executions[0],
        "duplicate_executions": executions[0] - executions[1],
        "trades": trades[0],
        "duplicate_trades": trades[0] - trades[1],
    }


def cli(settings: Settings, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = settings_env(settings, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.run(
        [sys.executable, "-m", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def audits(settings: Settings) -> dict[str, bool]:
    """The projector's conservation audit, each processor's verify, an L3 replica, and a rebuild
    equal to the incremental projection (the stack is stopped: a still picture)."""
    found = {
        "audit": cli(settings, "services.projector", "audit").returncode == 0,
        **{
            f"verify_{p}": cli(settings, f"services.{p}", "verify").returncode == 0
            for p in ("ledger", "matcher")
        },
        "replica_l3": cli(settings, "services.replica", "l3", "--idle", "3").returncode == 0,
    }
    before = contents(settings)
    rebuilt = cli(settings, "services.projector", "rebuild").returncode == 0
    after = contents(settings)
    found["rebuild_equal"] = rebuilt and after == before
    if not found["rebuild_equal"]:  # say where, for the report
        differ = sorted(t for t in before.keys() | after.keys() if before.get(t) != after.get(t))
        print("rebuild differs in:", differ, file=sys.stderr)
        for table in differ:
            was, now = set(before.get(table, [])), set(after.get(table, []))
            print(table, "only incremental:", sorted(was - now)[:5], file=sys.stderr)
            print(table, "only rebuilt:", sorted(now - was)[:5], file=sys.stderr)
    return found


def contents(settings: Settings) -> dict[str, list[tuple]]:
    with connect(settings.database_url) as conn:
        return schema.contents(conn)


def caught_up(settings: Settings, timeout: float = 180.0) -> None:
    """Wait until the projector applied the end of every topic it reads."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(consumer_config(settings, "chaos-watch"))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ends = {}
            for role in ("account.events", "market.events"):
                topic = settings.topic(role)
                for p in range(settings.partitions):
                    ends[(topic, p)] = end_of(consumer, TopicPartition(topic, p))
            with connect(settings.database_url) as conn:
                applied = {
                    (t, p): o
                    for t, p, o in conn.execute(
                        "SELECT topic, partition, next_offset FROM applied_offsets"
                    )
                }
            if all(applied.get(k, 0) >= end for k, end in ends.items() if end):
                return
            time.sleep(0.5)
        raise TimeoutError("the projector did not catch up after the chaos run")
    finally:
        consumer.close()


def run(
    env,
    seconds: float,
    fault_count: int,
    seed: int,
    rate: float,
    broker: bool = True,
    instances: int = 1,
) -> dict:
    """One chaos run on `env` (bench/env.py's single broker, or a ClusterEnv; started)."""
    rng = random.Random(seed)
    cluster = isinstance(env, ClusterEnv)
    settings = env.settings(partitions=2)
    logs = env.home / "logs" / "chaos"
    logs.mkdir(parents=True, exist_ok=True)
    ports = Ports(*free_ports(5), admin_key=f"chaos{seed}")
    services, _ = topology(instances)
    # the quote server too (day trading's prices), supervised but not among the faults' targets
    supervised = [*services[:-1], "quotes", services[-1]]
    brokers = ClusterBrokerFaults(env) if cluster else BrokerFaults(env)
    credentials = env.credentials() if cluster else None
    stack = Stack(settings, logs, ports, supervised, brokers, credentials)
    faults = schedule(rng, seconds, fault_count, broker, instances, cluster)
    told = {s: DayTold() if s == "daytrade" else Told() for s in SURFACES}
    stack.start()
    try:
        keys = asyncio.run(open_accounts(ports, rate))
        started = time.monotonic()
        struck: list[float] = []  # when the last fault ended

        def strike() -> None:
            for fault in faults:
                time.sleep(max(0.0, started + fault.at_s - time.monotonic()))
                stack.inflict(fault, rng, started)
            struck.append(time.monotonic())

        def going() -> bool:
            """The run's length; then on until every surface had an order sent after the last
            fault answered (its recovery is measured) and 10 s more, 120 s after the last fault
            at most."""
            now = time.monotonic()
            if now < started + seconds or not struck:
                return True
            last = started + faults[-1].at_s
            back = all(
                any(ok and sent >= last for sent, _, ok in t.answers[-200:]) for t in told.values()
            )
            return now < struck[0] + 10 or (not back and now < struck[0] + 120)

        striker = threading.Thread(target=strike, daemon=True)
        striker.start()
        asyncio.run(load(ports, rate, keys, told, going))
        striker.join()
        restarts = dict(stack.restarts)
        stack.quiesce()  # nothing more is appended: the projector can reach the end
        caught_up(settings)
    finally:
        stack.stop()
    measure(faults, told, started)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "seconds": seconds,
        "offered_rate": rate,
        "brokers": "three (RF 3, min.insync.replicas 2, SASL/SCRAM, ACLs)" if cluster else "one",
        "services": services,
        "faults": [asdict(f) for f in faults],
        "requests": sum(sum(t.sent.values()) for t in told.values()),
        "answered_ok": sum(1 for t in told.values() for *_, ok in t.answers if ok),
        "unknown": sum(t.unknown for t in told.values()),
        "restarts_by_supervisor": restarts,
        "stuck_on_stop": stack.stuck,
        **books(settings, told),
        "checks": audits(settings),
    }


def markdown(result: dict) -> str:
    lines = [
        f"# Chaos run {result['when']} (seed {result['seed']}, {result['seconds']:.0f} s, "
        f"{result['offered_rate']:.0f} orders/s offered, {result['brokers']} broker(s))",
        "",
        f"- services: {', '.join(result['services'])}",
        f"- requests {result['requests']:,}, answered ok {result['answered_ok']:,}, "
        f"unknown {result['unknown']}, executions {result['executions']:,}, "
        f"trades {result['trades']:,}",
        f"- **lost {result['lost']}, duplicated {result['duplicated']}**; restarted by the "
        f"supervisor: {result['restarts_by_supervisor'] or 'none'}",
        "- checks: "
        + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in result["checks"].items()),
        "",
        "| surface | requests | told open | unknown | lost | duplicated |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in result["surfaces"].items():
        lines.append(
            f"| {name} | {s['requests']:,} | {s['told_open']:,} | {s['unknown']} | "
            f"{s['lost']} | {s['duplicated']} |"
        )
    day = result["surfaces"].get("daytrade")
    if day:
        lines += [
            "",
            f"Day trading (told open = lines answered OK): unknown lines settled by the account's "
            f"summary: {day['settled'] or 'none'}; unexplained {len(day['unexplained'])}, "
            f"users never read back {len(day['unsettled_users'])}; errors {day['refused']}",
        ]
    lines += [
        "",
        "| at (s) | fault | target | down (s) | recovery (s) | by surface (s) | spike (ms) |",
        "|---:|---|---|---:|---:|---|---:|",
    ]
    for f in result["faults"]:
        each = ", ".join(f"{k} {v}" for k, v in f["recovery_by_surface"].items())
        lines.append(
            f"| {f['at_s']} | {f['kind']} | {f['target']} | {f['down_s']} | "
            f"{f['recovery_s']} | {each} | {f['spike_ms']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench.env import BenchEnv

    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--faults", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--cluster", action="store_true", help="three brokers, as make cluster")
    parser.add_argument("--instances", type=int, default=1, help="of each processor")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    with chaos_cluster_env() if args.cluster else BenchEnv(RESULTS) as env:
        result = run(env, args.seconds, args.faults, args.seed, args.rate, instances=args.instances)
    kind = "-chaos-cluster" if args.cluster else "-chaos"
    stem = RESULTS / f"{datetime.now(UTC):%Y-%m-%dT%H%M}{kind}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    ok = result["lost"] == 0 and result["duplicated"] == 0 and all(result["checks"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
