"""Ledger, matcher and projector together on the real broker and database.

Commands go onto ledger.commands exactly as a gateway writes them; the rows that end up in
PostgreSQL are checked, including after kill -9 of the ledger, the matcher and the projector.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections import Counter

import psycopg
import pytest
from confluent_kafka import Producer

from services.common.codec import Codec
from services.common.kafka import producer_config
from services.common.money import CASH_SCALE, PRICE_SCALE, QTY_SCALE
from services.common.reader import end_offsets
from services.projector.schema import contents
from tests.integration import backlog
from tests.support import ServiceProcs, fresh_settings, read_all, run_cli, wait_until

pytestmark = pytest.mark.integration
CODEC = Codec()
PROCESSORS = ("ledger", "matcher", "projector")


class CommandLog:
    """Appends ledger commands the way a gateway does."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.topic = settings.topic("ledger.commands")
        self.producer = Producer(producer_config(settings))
        self.sent: dict[str, str] = {}  # command id -> record name
        self.failed: list[str] = []  # delivery errors: a command that never reached the log

    def _delivered(self, error, _message) -> None:
        if error is not None:
            self.failed.append(str(error))

    def flush(self) -> None:
        """Until every command sent is on the log; a command that could not be is an error here,
        not an undecided command later."""
        self.producer.flush()
        assert not self.failed, f"commands not delivered: {self.failed[:5]}"

    def send(self, name: str, key: str, partition: int | None = None, **fields) -> str:
        command_id = uuid.uuid4().hex
        envelope = {
            "command_id": command_id,
            "key": key,
            "ts": time.time_ns() // 1000,
            "reply_to": "",
        }
        value = CODEC.encode(f"marketlog.ledger.{name}", {"envelope": envelope, **fields})
        if partition is None:
            self.producer.produce(self.topic, value, key, on_delivery=self._delivered)
        else:
            self.producer.produce(
                self.topic, value, key, partition=partition, on_delivery=self._delivered
            )
        self.sent[command_id] = name
        return command_id

    def list_symbol(self, symbol: str) -> None:
        for partition in range(self.settings.partitions):
            self.send("CreateSymbol", symbol, partition, tick=1, lot=1)
        self.flush()

    def open_account(self, account: str, cash: int, shares: dict[str, int]) -> None:
        self.send("CreateAccount", account, balance=cash * CASH_SCALE, api_key_hash="")
        for symbol, qty in shares.items():
            self.send("IssueShares", account, symbol=symbol, qty=qty * QTY_SCALE)

    def place(
        self, account: str, symbol: str, side: str, qty: int, price: int, tif: str = "GTC"
    ) -> str:
        command_id = self.send(
            "PlaceOrder",
            account,
            symbol=symbol,
            side=side,
            price=price * PRICE_SCALE,
            qty=qty * QTY_SCALE,
            tif=tif,
            client_order_id="",
            expire_ts=None,
            post_only=False,
            stp="NONE",
            budget=None,
        )
        self.flush()
        return command_id


def query(settings, sql: str, *args) -> list[tuple]:
    with psycopg.connect(settings.database_url, options="-c search_path=projection") as conn:
        return conn.execute(sql, args).fetchall()


@pytest.fixture
def pipeline(settings, database_url, tmp_path):
    settings = dataclasses.replace(settings, database_url=database_url)
    procs = ServiceProcs(
        settings,
        tmp_path,
        MARKETLOG_LEDGER_SNAPSHOT_RECORDS="500",
        MARKETLOG_MATCHER_SNAPSHOT_RECORDS="500",
    )
    procs.start(*PROCESSORS)
    yield settings, procs
    procs.stop_all()


def wait_for_order(settings, command_id: str, status: str) -> int:
    rows = wait_until(
        lambda: query(
            settings,
            "SELECT order_id FROM orders WHERE command_id = %s AND status = %s",
            command_id,
            status,
        ),
        30,
        f"order of command {command_id} to be {status}",
    )
    return rows[0][0]


def balance(settings, account: str) -> tuple[int, int]:
    return query(settings, "SELECT available, held FROM balances WHERE account_id = %s", account)[0]


def test_the_course_worked_example_ends_in_the_right_rows(pipeline):
    settings, _ = pipeline
    log = CommandLog(settings)
    log.list_symbol("X")
    for account in "12345678":
        log.open_account(account, 100_000, {"X": 1000})
    log.flush()
    wait_until(lambda: query(settings, "SELECT count(*) FROM accounts")[0][0] == 8, 30, "accounts")
    resting = [
        ("1", "BUY", 300, 125),
        ("2", "SELL", 100, 130),
        ("3", "BUY", 200, 127),
        ("4", "SELL", 500, 128),
        ("5", "SELL", 200, 140),
        ("6", "BUY", 400, 125),
    ]
    ids = {}
    for account, side, qty, price in resting:  # one at a time: arrival order is time priority
        ids[account] = wait_for_order(settings, log.place(account, "X", side, qty, price), "open")
    ids["7"] = wait_for_order(settings, log.place("7", "X", "SELL", 400, 124), "executed")

    def fills(order_id):
        return query(
            settings, "SELECT qty, price FROM executions WHERE order_id = %s ORDER BY seq", order_id
        )

    assert fills(ids["7"]) == [
        (200 * QTY_SCALE, 127 * PRICE_SCALE),
        (200 * QTY_SCALE, 125 * PRICE_SCALE),
    ]
    assert fills(ids["3"]) == [(200 * QTY_SCALE, 127 * PRICE_SCALE)]
    assert fills(ids["1"]) == [(200 * QTY_SCALE, 125 * PRICE_SCALE)]
    assert fills(ids["6"]) == []  # order 1 arrived first at 125
    assert query(settings, "SELECT open_qty, status FROM orders WHERE order_id = %s", ids["1"]) == [
        (100 * QTY_SCALE, "open")
    ]
    assert query(settings, "SELECT status FROM orders WHERE order_id = %s", ids["3"]) == [
        ("executed",)
    ]
    cash = CASH_SCALE
    assert balance(settings, "7") == (150_400 * cash, 0)  # seller's proceeds 200×127 + 200×125
    assert balance(settings, "1") == (62_500 * cash, 12_500 * cash)  # 100 still held at 125
    # a buyer that executes below its limit gets the difference back
    ids["8"] = wait_for_order(settings, log.place("8", "X", "BUY", 100, 135), "executed")
    assert fills(ids["8"]) == [(100 * QTY_SCALE, 128 * PRICE_SCALE)]  # order 4, the best ask
    assert balance(settings, "8") == (87_200 * cash, 0)  # paid 12,800, not the 13,500 held
    assert balance(settings, "4") == (112_800 * cash, 0)
    assert query(settings, "SELECT available, held FROM positions WHERE account_id = '8'") == [
        (1100 * QTY_SCALE, 0)
    ]


def feed(
    log: CommandLog, rng: random.Random, accounts: list[str], symbols: list[str], count: int
) -> None:
    """`count` seeded commands: orders, cancels of guessed ids, deposits."""
    for _ in range(count):
        account = rng.choice(accounts)
        roll = rng.random()
        if roll < 0.75:
            log.place(
                account,
                rng.choice(symbols),
                rng.choice(["BUY", "SELL"]),
                rng.randint(1, 30),
                rng.randint(95, 105),
                rng.choice(["GTC", "GTC", "IOC"]),
            )
        elif roll < 0.95:  # ids guessed: many unknown or another account's, all must be refused
            log.send("CancelOrder", account, order_id=rng.randint(1, 3000))
        else:
            log.send("Deposit", account, amount=rng.randint(1, 1000) * CASH_SCALE)
    log.flush()


def caught_up(settings) -> bool:
    """The projector applied everything on account.events and market.events."""
    applied = dict(
        ((t, p), o)
        for t, p, o in query(settings, "SELECT topic, partition, next_offset FROM applied_offsets")
    )
    for role in ("account.events", "market.events"):
        topic = settings.topic(role)
        for record in _last_per_partition(settings, topic):
            if applied.get((topic, record.partition()), 0) <= record.offset():
                return False
    return True


INPUTS = {"ledger": "ledger.commands", "matcher": "match.commands", "engine": "ledger.commands"}
ORDER_PATH = ("ledger.commands", "match.commands", "account.events", "market.events")


def settled(settings, processors=("ledger", "matcher")) -> bool:
    """Nothing of the order path in flight: no transaction open on any of its topics (a killed
    processor's holds its readers back until the broker aborts it), the ledger and the matcher
    have committed past the last record of their inputs, and the projector has applied
    everything. A check that only the projector caught up can pass while a stuck transaction
    still holds settlements back (verify then saw outputs newer than the input it had read)."""
    topics = [settings.topic(role) for role in ORDER_PATH]
    if end_offsets(settings, topics) != end_offsets(settings, topics, committed=False):
        return False
    for group in processors:
        topic = settings.topic(INPUTS[group])
        done = backlog.committed(settings.kafka, settings.topic_prefix + group, topic)
        for record in _last_per_partition(settings, topic):
            if done.get((topic, record.partition()), 0) <= record.offset():
                return False
    return caught_up(settings)


def in_flight(settings, processors, log: CommandLog, undecided: set[str]) -> str:
    """Where a stalled pipeline stands: the undecided commands by name, each topic's last stable
    offsets against its high watermarks (an open transaction holds the first back), and each
    processor group's committed offsets on its input."""
    names = Counter(log.sent[cid] for cid in undecided)
    lines = [f"undecided: {len(undecided)} {dict(names)}"]
    where = []  # the first undecided commands' places on ledger.commands
    for record in read_all(settings, settings.topic("ledger.commands")):
        if CODEC.decode(record.value())[1]["envelope"]["command_id"] in undecided:
            where.append((record.partition(), record.offset()))
    lines.append(f"{len(where)} undecided on ledger.commands at {sorted(where)[:20]}")
    topics = [settings.topic(role) for role in ORDER_PATH]
    stable, high = end_offsets(settings, topics), end_offsets(settings, topics, committed=False)
    for key in sorted(high):
        lines.append(f"{key}: stable {stable.get(key)} high {high[key]}")
    for group in sorted(processors):
        topic = settings.topic(INPUTS[group])
        done = backlog.committed(settings.kafka, settings.topic_prefix + group, topic)
        lines.append(f"{group} committed: {dict(sorted(done.items()))}")
    return "\n".join(lines)


def log_tails(procs, lines: int = 12) -> str:
    """The last lines each service logged: what a CI log keeps of a failed run."""
    tails = []
    for path in sorted(procs.logs.glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"-- {path.name}\n" + "\n".join(tail))
    return "\n".join(tails)


def _last_per_partition(settings, topic: str) -> list:
    last = {}
    for record in read_all(settings, topic):
        last[record.partition()] = record
    return list(last.values())


def test_kill_9_of_every_processor_keeps_the_books_exact(pipeline):
    """Each kill lands once the victim has applied part of its input and while input it has not
    read is waiting (it is paused, then more commands are fed and flow to it through the
    processors upstream; see tests/integration/backlog.py)."""
    settings, procs = pipeline
    victims = ["ledger", "projector", "ledger", "matcher", "projector", "ledger", "projector"]
    kill_and_check(settings, procs, victims, {"ledger", "matcher"})


@pytest.fixture
def engine(services, database_url, tmp_path):
    """The engine topology: one processor for the ledger's and the matcher's cores, one
    partition (services/engine), with the projector."""
    settings = fresh_settings(services.kafka, database_url, tmp_path / "run", partitions=1)
    procs = ServiceProcs(
        settings, tmp_path, MARKETLOG_TOPOLOGY="engine", MARKETLOG_ENGINE_SNAPSHOT_RECORDS="500"
    )
    procs.start("engine", "projector")
    yield settings, procs
    procs.stop_all()


def test_kill_9_of_the_engine_keeps_the_books_exact(engine):
    settings, procs = engine
    victims = ["engine", "projector", "engine", "engine", "projector"]
    kill_and_check(settings, procs, victims, {"engine"})


def kill_and_check(settings, procs, victims: list[str], processors: set[str]) -> None:
    """Feed commands, kill -9 each victim with input waiting, restart it; then every command is
    decided once, the rows are exact, the audit and each processor's verify pass, and a rebuild
    equals the incremental projection."""
    log = CommandLog(settings)
    symbols, accounts = ["S0", "S1", "S2"], [f"a{i}" for i in range(20)]
    for symbol in symbols:
        log.list_symbol(symbol)
    for account in accounts:
        log.open_account(account, 1_000_000, dict.fromkeys(symbols, 10_000))
    rng, total, chunk = random.Random(7), 3000, 150
    kafka, prefix = settings.kafka, settings.topic_prefix

    def committed(name: str, role: str):
        topic = settings.topic(role)
        return lambda: sum(backlog.committed(kafka, prefix + name, topic).values())

    def applied() -> int:
        sql = "SELECT coalesce(sum(next_offset), 0)::bigint FROM applied_offsets"
        return query(settings, sql)[0][0]

    watch = {  # each processor's own progress, and what it reads
        "ledger": (committed("ledger", "ledger.commands"), ["ledger.commands"]),
        "matcher": (committed("matcher", "match.commands"), ["match.commands"]),
        "engine": (committed("engine", "ledger.commands"), ["ledger.commands"]),
        "projector": (applied, ["account.events", "market.events"]),
    }
    kills = []
    for victim in victims:
        progress, roles = watch[victim]
        kills.append(
            backlog.kill_with_unread_input(
                kafka,
                procs.procs[victim],
                progress=progress,
                inputs=lambda roles=roles: backlog.partitions_of(
                    kafka, [settings.topic(r) for r in roles]
                ),
                feed=lambda _: feed(log, rng, accounts, symbols, chunk),
            )
        )
        procs.start(victim)
    feed(log, rng, accounts, symbols, total - 2 * chunk * len(victims))
    print("kills:", kills)
    assert all(k.progress > 0 and k.unread > 0 for k in kills), kills
    decided = {"OrderAccepted", "CommandRejected", "CashDeposited"}

    def decisions():
        found = {}
        for record in read_all(settings, settings.topic("account.events")):
            name, event = CODEC.decode(record.value())
            if name.rsplit(".", 1)[1] in decided and event["envelope"]["command_id"] in log.sent:
                found.setdefault(event["envelope"]["command_id"], []).append(name)
        return found

    commands = {
        cid for cid, name in log.sent.items() if name in {"PlaceOrder", "CancelOrder", "Deposit"}
    }
    try:
        found = wait_until(
            lambda: (d := decisions()) and commands <= set(d) and d,
            120,
            "a decision for every command",
        )
    except TimeoutError as exc:  # say where the commands stopped (a CI log keeps only this)
        undecided = commands - set(decisions())
        state = in_flight(settings, processors, log, undecided)
        raise TimeoutError(f"{exc}\n{state}\n{log_tails(procs)}") from exc
    duplicates = {cid: names for cid, names in found.items() if len(names) != 1}
    assert not duplicates, "a command decided twice"
    wait_until(lambda: settled(settings, sorted(processors)), 120, "the pipeline to settle")

    fills = sum(
        1
        for r in read_all(settings, settings.topic("account.events"))
        if CODEC.decode(r.value())[0] == "marketlog.account.OrderFilled"
    )
    trades = sum(
        1
        for r in read_all(settings, settings.topic("market.events"))
        if CODEC.decode(r.value())[0] == "marketlog.market.Trade"
    )
    assert trades > 100, "the stream should trade"
    assert query(settings, "SELECT count(*), count(DISTINCT (order_id, seq)) FROM executions")[
        0
    ] == (fills, fills)
    assert query(settings, "SELECT count(*), count(DISTINCT (symbol, seq)) FROM trades")[0] == (
        trades,
        trades,
    )
    audit = run_cli(settings, "services.projector", "audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    for service in sorted(processors):
        verify = run_cli(settings, f"services.{service}", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
    procs.stop_all()  # a rebuild swaps tables; compare against a still picture
    with psycopg.connect(settings.database_url) as conn:
        incremental = contents(conn)
    rebuild = run_cli(settings, "services.projector", "rebuild")
    assert rebuild.returncode == 0, rebuild.stderr
    with psycopg.connect(settings.database_url) as conn:
        assert contents(conn) == incremental
