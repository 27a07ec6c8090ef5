"""Chaos under load (issue 19): faults at seeded moments while XML clients trade, then the books.

    python -m bench.chaos [--seconds 120] [--faults 8] [--seed 1] [--rate 100]   (make chaos)

A broker and PostgreSQL of its own (bench/env.py), the split topology (ledger, matcher,
projector, gateway) and closed-loop XML clients, one account each, offering about ``rate`` orders
per second that cross and fill. While they trade, a seeded schedule of faults: kill -9 of a
service (restarted after a short down time), SIGSTOP of a processor past its consumer session
timeout (10 s) then SIGCONT, kill -9 of the broker (restarted on its data). A supervisor restarts
any service that exits by itself and counts it. The clients reconnect when the gateway goes away;
a request whose answer never came is "unknown", never retried.

At the end, against what the clients were told (``Told``): every order told `<opened>` is in the
log and the projection once (``lost`` counts those missing), no account has more orders in the
log than it sent requests and no command is decided twice (``duplicated``); executions and
trades are distinct; then the projector's conservation audit, each processor's ``verify`` (the
log replays byte for byte), a rebuild of the projection equal to the incremental one, and an L3
replica equal to the matcher's checksums. Per fault: when it hit, what, the seconds until an
order sent after it was answered again (``recovery_s``) and the worst latency of the orders sent
in that window (``spike_ms``). Results: bench/results/<date>-chaos.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from infra.stack import ServiceProcs, free_port, settings_env
from services.common.codec import Codec
from services.common.config import Settings
from services.common.reader import read_topic
from services.projector import schema  # the projection's own tables, read as the tests do
from services.projector.schema import connect

SERVICES = ("projector", "ledger", "matcher", "gateway")
PROCESSORS = ("ledger", "matcher")
SESSION_TIMEOUT_S = 10.0  # services/common/kafka.py session.timeout.ms
SYMBOLS = ("C0", "C1")
OPENED = re.compile(rb'<opened [^>]*id="(\d+)"')
REQUEST_TIMEOUT_S = 30.0
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Fault:
    kind: str  # kill | pause | broker
    target: str
    at_s: float  # since the load started
    down_s: float
    recovery_s: float | None = None
    spike_ms: float | None = None


@dataclass
class Told:
    """What the load generator sent and was told, per account."""

    sent: Counter = field(default_factory=Counter)
    opened: dict[int, str] = field(default_factory=dict)  # order id -> account
    errors: Counter = field(default_factory=Counter)  # <error> answers by text
    unknown: int = 0  # requests whose answer never came (connection lost or timed out)
    answers: list[tuple[float, float, bool]] = field(default_factory=list)  # sent, answered, ok


def schedule(rng: random.Random, seconds: float, count: int, broker: bool) -> list[Fault]:
    """`count` faults spread over the middle of the run: kills of every service, one pause, and
    (if `broker`) one broker kill; their order and moments from the seed."""
    kinds: list[tuple[str, str]] = [("pause", rng.choice(PROCESSORS))]
    if broker:
        kinds.append(("broker", "kafka"))
    while len(kinds) < count:
        kinds.append(("kill", SERVICES[len(kinds) % len(SERVICES)]))
    rng.shuffle(kinds)
    gap = seconds * 0.8 / len(kinds)
    faults = []
    for n, (kind, target) in enumerate(kinds):
        at = seconds * 0.1 + n * gap + rng.uniform(0, gap * 0.3)
        down = SESSION_TIMEOUT_S + 2 if kind == "pause" else rng.uniform(0.5, 3.0)
        faults.append(Fault(kind, target, round(at, 2), round(down, 2)))
    return faults


class Stack:
    """The services as subprocesses, with a supervisor restarting what exits by itself."""

    def __init__(self, env, settings: Settings, logs: Path, xml_port: int, admin: str) -> None:
        self.env, self.settings = env, settings
        self.procs = ServiceProcs(
            settings,
            logs,
            MARKETLOG_XML_PORT=str(xml_port),
            MARKETLOG_HTTP_PORT=str(free_port()),
            MARKETLOG_PRIVATE_PORT=str(free_port()),
            MARKETLOG_PUBLIC_PORT=str(free_port()),
            MARKETLOG_DAYTRADE_PORT=str(free_port()),
            MARKETLOG_ADMIN_KEY=admin,
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
        self.procs.start(*SERVICES)
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

    def inflict(self, fault: Fault) -> None:
        """Blocking: the fault, its down time, the way back."""
        if fault.kind == "broker":
            with self.lock:
                os.killpg(int(self.env.kafka.pid_file.read_text()), signal.SIGKILL)
                time.sleep(fault.down_s)
                self.env.kafka.start()
            return
        with self.lock:
            self.down.add(fault.target)
        if fault.kind == "kill":
            self.procs.kill(fault.target)
            time.sleep(fault.down_s)
            with self.lock:
                self._start(fault.target)
        else:
            self.procs.signal(fault.target, signal.SIGSTOP)
            time.sleep(fault.down_s)
            self.procs.signal(fault.target, signal.SIGCONT)
        with self.lock:
            self.down.discard(fault.target)

    def quiesce(self) -> None:
        """Stop the supervisor, then every service but the projector."""
        self.stopping.set()
        with self.lock:
            for name in SERVICES:
                if name != "projector" and self.procs.procs[name].poll() is None:
                    self.procs.procs[name].terminate()
            for name in SERVICES:
                if name != "projector":
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


class Trader:
    """One XML connection trading as one account, one request at a time."""

    def __init__(self, port: int, account: str, n: int, told: Told) -> None:
        self.port, self.account, self.n, self.told = port, account, n, told
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, body: bytes) -> bytes | None:
        try:
            if self.conn is None:
                self.conn = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.port), 2
                )
            reader, writer = self.conn
            writer.write(b"%d\n%s" % (len(body), body))
            return await asyncio.wait_for(reader.readuntil(b"</results>"), REQUEST_TIMEOUT_S)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            if self.conn is not None:
                self.conn[1].close()
            self.conn = None
            return None

    async def trade(self, going: Callable[[], bool], interval: float) -> None:
        k = 0
        while going():
            began = time.monotonic()
            side = 1 if (self.n + k) % 2 else -1
            body = (
                f'<transactions id="{self.account}"><order sym="{SYMBOLS[k % 2]}" '
                f'amount="{side * (1 + k % 3)}" limit="{99 + (self.n + k) % 3}"/></transactions>'
            ).encode()
            self.told.sent[self.account] += 1
            reply = await self.request(body)
            answered = time.monotonic()
            if reply is None:
                self.told.unknown += 1
                await asyncio.sleep(0.2)  # the gateway may be down: do not spin
            else:
                found = OPENED.search(reply)
                if found:
                    self.told.opened[int(found.group(1))] = self.account
                else:
                    self.told.errors[reply.decode(errors="replace")[:120]] += 1
            self.told.answers.append((began, answered, reply is not None and found is not None))
            k += 1
            await asyncio.sleep(max(0.0, interval - (answered - began)))


async def open_accounts(port: int, accounts: list[str]) -> None:
    trader = Trader(port, "setup", 0, Told())
    for first in range(0, len(accounts), 20):
        chunk = accounts[first : first + 20]
        body = "<create>" + "".join(f'<account id="{a}" balance="100000000"/>' for a in chunk)
        for symbol in SYMBOLS:
            body += f'<symbol sym="{symbol}">'
            body += "".join(f'<account id="{a}">1000000</account>' for a in chunk) + "</symbol>"
        reply = await trader.request((body + "</create>").encode())
        if reply is None or b"<error" in reply:
            raise RuntimeError(f"could not open the accounts: {reply!r}")


async def load(
    port: int, accounts: list[str], rate: float, told: Told, going: Callable[[], bool]
) -> None:
    interval = len(accounts) / rate
    traders = [Trader(port, a, n, told) for n, a in enumerate(accounts)]
    await asyncio.gather(*(t.trade(going, interval) for t in traders))


def measure(faults: list[Fault], told: Told, started: float) -> None:
    """Per fault: seconds from it until an order sent after it is answered, and the worst latency
    of the orders sent from the fault until then."""
    for fault in faults:
        hit = started + fault.at_s
        after = sorted((s, a) for s, a, ok in told.answers if ok and s >= hit)
        if not after:
            continue
        back = after[0][1]
        fault.recovery_s = round(back - hit, 2)
        window = [a - s for s, a, _ in told.answers if hit <= s <= back]
        fault.spike_ms = round(max(window, default=0.0) * 1000, 1)


def books(settings: Settings, told: Told) -> dict:
    """Lost and duplicated against the told record; distinct executions and trades."""
    codec = Codec()
    decided: Counter = Counter()
    placed: Counter = Counter()
    for record in read_topic(settings, settings.topic("account.events"), idle_timeout=3.0):
        name, event = codec.decode(record.value())
        kind = name.rsplit(".", 1)[1]
        if kind in {"OrderAccepted", "CommandRejected", "AccountCreated", "SharesIssued"}:
            decided[event["envelope"]["command_id"]] += 1
        if kind == "OrderAccepted":
            placed[event["envelope"]["key"]] += 1  # the account
    with connect(settings.database_url) as conn:
        rows = dict(conn.execute("SELECT order_id, account_id FROM orders").fetchall())
        executions = conn.execute(
            "SELECT count(*), count(DISTINCT (order_id, seq)) FROM executions"
        ).fetchone()
        trades = conn.execute(
            "SELECT count(*), count(DISTINCT (symbol, seq)) FROM trades"
        ).fetchone()
    missing = [oid for oid, account in told.opened.items() if rows.get(oid) != account]
    over = {a: placed[a] - n for a, n in told.sent.items() if placed[a] > n}
    twice = [cid for cid, n in decided.items() if n > 1]
    return {
        "lost": len(missing),
        "lost_order_ids": missing[:20],
        "duplicated": len(twice) + sum(over.values()) + (executions[0] - executions[1]),
        "commands_decided_twice": twice[:20],
        "accounts_with_more_orders_than_requests": over,
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
            for p in PROCESSORS
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

    consumer = Consumer({"bootstrap.servers": settings.kafka, "group.id": "chaos-watch"})
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ends = {}
            for role in ("account.events", "market.events"):
                topic = settings.topic(role)
                for p in range(settings.partitions):
                    _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), 5)
                    ends[(topic, p)] = high
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


def run(env, seconds: float, fault_count: int, seed: int, rate: float, broker: bool = True) -> dict:
    """One chaos run on `env` (bench/env.py, started); returns the results."""
    rng = random.Random(seed)
    settings = env.settings(partitions=2)
    logs = env.home / "logs" / "chaos"
    logs.mkdir(parents=True, exist_ok=True)
    xml_port = free_port()
    stack = Stack(env, settings, logs, xml_port, admin=f"chaos{seed}")
    faults = schedule(rng, seconds, fault_count, broker)
    accounts = [str(900_000 + i) for i in range(max(8, int(rate // 4)))]  # ~4 orders/s each
    told = Told()
    stack.start()
    try:
        asyncio.run(open_accounts(xml_port, accounts))
        started = time.monotonic()

        struck: list[float] = []  # when the last fault ended

        def strike() -> None:
            for fault in faults:
                time.sleep(max(0.0, started + fault.at_s - time.monotonic()))
                fault.at_s = round(time.monotonic() - started, 2)  # a fault may start late
                stack.inflict(fault)
            struck.append(time.monotonic())

        def going() -> bool:
            """The run's length; then on until an order sent after the last fault is answered
            (its recovery is measured) and 10 s more, 120 s after the last fault at most."""
            now = time.monotonic()
            if now < started + seconds or not struck:
                return True
            last = started + faults[-1].at_s
            back = any(ok and sent >= last for sent, _, ok in told.answers[-500:])
            return now < struck[0] + 10 or (not back and now < struck[0] + 120)

        striker = threading.Thread(target=strike, daemon=True)
        striker.start()
        asyncio.run(load(xml_port, accounts, rate, told, going))
        striker.join()
        restarts = dict(stack.restarts)
        stack.quiesce()  # nothing more is appended: the projector can reach the end
        caught_up(settings)
    finally:
        stack.stop()
    measure(faults, told, started)
    answered = sum(1 for _, _, ok in told.answers if ok)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "seconds": seconds,
        "offered_rate": rate,
        "faults": [asdict(f) for f in faults],
        "requests": sum(told.sent.values()),
        "opened": len(told.opened),
        "answered_ok": answered,
        "unknown": told.unknown,
        "errors": dict(told.errors.most_common(5)),
        "restarts_by_supervisor": restarts,
        "stuck_on_stop": stack.stuck,
        **books(settings, told),
        "checks": audits(settings),
    }


def markdown(result: dict) -> str:
    lines = [
        f"# Chaos run {result['when']} (seed {result['seed']}, {result['seconds']:.0f} s, "
        f"{result['offered_rate']:.0f} orders/s offered)",
        "",
        f"- requests {result['requests']:,}, told opened {result['opened']:,}, "
        f"unknown {result['unknown']}, executions {result['executions']:,}, "
        f"trades {result['trades']:,}",
        f"- **lost {result['lost']}, duplicated {result['duplicated']}**; restarted by the "
        f"supervisor: {result['restarts_by_supervisor'] or 'none'}",
        "- checks: "
        + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in result["checks"].items()),
        "",
        "| at (s) | fault | target | down (s) | recovery (s) | spike (ms) |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for f in result["faults"]:
        lines.append(
            f"| {f['at_s']} | {f['kind']} | {f['target']} | {f['down_s']} | "
            f"{f['recovery_s']} | {f['spike_ms']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench.env import BenchEnv

    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--faults", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    with BenchEnv(RESULTS) as env:
        result = run(env, args.seconds, args.faults, args.seed, args.rate)
    stem = RESULTS / f"{datetime.now(UTC):%Y-%m-%dT%H%M}-chaos"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    ok = result["lost"] == 0 and result["duplicated"] == 0 and all(result["checks"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
