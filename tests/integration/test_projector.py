"""The projector on real Kafka and PostgreSQL: rows, read-your-writes offsets, rebuild, audit."""

from __future__ import annotations

import dataclasses
import threading

import psycopg
import pytest

from services.common import reader
from services.common.money import parse_price, parse_qty
from services.projector import audit, rows, schema, service, store
from testkit import history
from tests.support import run_cli, wait_until

pytestmark = pytest.mark.integration

P, Q = parse_price, parse_qty  # "125" -> price units, "300" -> quantity units


@pytest.fixture
def cfg(settings, database_url):
    """The test's topics and its own fresh database."""
    return dataclasses.replace(settings, database_url=database_url)


class Running:
    """A projector serving in a thread of this process."""

    def __init__(self, cfg, **kwargs) -> None:
        self.projector = service.Projector(cfg, **kwargs)
        self.thread = threading.Thread(target=self.projector.serve, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.projector.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


def end_offsets(cfg) -> dict[tuple[str, int], int]:
    """The log end of every partition of both input topics (what caught up means)."""
    topics = [cfg.topic(role) for role in ("account.events", "market.events")]
    return reader.end_offsets(cfg, topics, committed=False)


def applied(cfg, target: str = schema.LIVE) -> dict[tuple[str, int], int]:
    with schema.connect(cfg.database_url, target) as conn:
        try:
            rows = conn.execute("SELECT topic, partition, next_offset FROM applied_offsets")
            return {(t, p): n for t, p, n in rows}
        except psycopg.errors.UndefinedTable:
            return {}


def caught_up(cfg) -> bool:
    ends, done = end_offsets(cfg), applied(cfg)
    return all(done.get(key, 0) >= end for key, end in ends.items() if end)


def wait_caught_up(cfg, timeout: float = 60.0) -> None:
    wait_until(lambda: caught_up(cfg), timeout, "the projector to reach the log end")


def contents(cfg) -> dict[str, list[tuple]]:
    with schema.connect(cfg.database_url) as conn:
        return schema.contents(conn)


def query(cfg, sql: str, *params) -> list[tuple]:
    with schema.connect(cfg.database_url) as conn:
        return conn.execute(sql, params).fetchall()


def worked_example() -> tuple[history.Market, dict[int, int]]:
    """The course example (notes/protocols.md §1) plus a buy that executes below its limit."""
    ex = history.Market()
    ex.create_symbol("X")
    ex.create_account("100", P("1000000") * Q("1"))  # 1,000,000 of cash
    ex.create_account("200", 0)
    ex.issue("200", "X", Q("1500"))
    ids = {}
    for n, (side, qty, price) in enumerate(
        [
            ("BUY", "300", "125"),
            ("SELL", "100", "130"),
            ("BUY", "200", "127"),
            ("SELL", "500", "128"),
            ("SELL", "200", "140"),
            ("BUY", "400", "125"),
        ],
        1,
    ):
        account = "100" if side == "BUY" else "200"
        ids[n] = ex.place(account, "X", side, Q(qty), P(price), client_order_id=f"o{n}")
    ids[7] = ex.place("200", "X", "SELL", Q("400"), P("124"))
    ids[8] = ex.place("100", "X", "BUY", Q("100"), P("135"))  # takes order 4 at 128
    ex.cancel("100", ids[6])
    return ex, ids


def test_worked_example_ends_in_the_right_rows(cfg):
    ex, ids = worked_example()
    listener = psycopg.connect(cfg.database_url, autocommit=True)
    listener.execute(f"LISTEN {schema.CHANNEL}")
    history.produce(cfg, history.encode(ex.events))
    running = Running(cfg)
    try:
        wait_caught_up(cfg)
    finally:
        running.stop()

    status = dict(query(cfg, "SELECT order_id, status FROM orders"))
    assert [status[ids[n]] for n in range(1, 9)] == [
        "open", "open", "executed", "open", "open", "cancelled", "executed", "executed",
    ]  # fmt: skip
    fills = query(cfg, "SELECT order_id, qty, price FROM executions ORDER BY seq, order_id")
    assert fills == [
        (ids[3], Q("200"), P("127")),
        (ids[7], Q("200"), P("127")),
        (ids[1], Q("200"), P("125")),
        (ids[7], Q("200"), P("125")),
        (ids[4], Q("100"), P("128")),
        (ids[8], Q("100"), P("128")),
    ]
    order = "SELECT open_qty, executed_qty, cancelled_qty, cancelled_ts, hold FROM orders"
    assert query(cfg, order + " WHERE order_id = %s", ids[1]) == [
        (Q("100"), Q("200"), 0, None, P("125") * Q("100"))
    ]
    [(open_qty, _, cancelled, when, hold)] = query(cfg, order + " WHERE order_id = %s", ids[6])
    assert (open_qty, cancelled, hold) == (0, Q("400"), 0) and when > 0

    # buyer: paid 200×127 + 200×125 + 100×128 (8 bought at 135 and got 7 back per share);
    # still holds 100×125 for order 1 (order 6 was cancelled, its hold released)
    buyer = query(cfg, "SELECT available, held FROM balances WHERE account_id = '100'")[0]
    spent = P("127") * Q("200") + P("125") * Q("200") + P("128") * Q("100")
    assert buyer == (P("1000000") * Q("1") - spent - P("125") * Q("100"), P("125") * Q("100"))
    seller = query(cfg, "SELECT available, held FROM balances WHERE account_id = '200'")[0]
    assert seller == (spent, 0)
    positions = query(cfg, "SELECT account_id, available, held FROM positions ORDER BY 1")
    assert positions == [("100", Q("500"), 0), ("200", Q("300"), Q("700"))]

    # the public side: trades, the L2 book and the sequence it reflects
    trades = query(cfg, "SELECT price, qty FROM trades ORDER BY seq")
    assert trades == [(P("127"), Q("200")), (P("125"), Q("200")), (P("128"), Q("100"))]
    levels = query(cfg, "SELECT side, price, qty FROM book_levels ORDER BY side, price")
    assert levels == [
        ("BUY", P("125"), Q("100")),
        ("SELL", P("128"), Q("400")),
        ("SELL", P("130"), Q("100")),
        ("SELL", P("140"), Q("200")),
    ]
    (seq,) = query(cfg, "SELECT seq FROM books WHERE symbol = 'X'")[0]
    assert seq == ex.seq["X"]
    stats = query(cfg, "SELECT trades, volume, high, low, last_price FROM market_stats")
    assert stats == [(3, Q("500"), P("128"), P("125"), P("128"))]

    # every decision audited; readers were told the offsets
    assert query(cfg, "SELECT count(*) FROM audit_log")[0][0] == sum(
        1 for e in ex.events if e[0] == "account" and e[2] != history.PLACED
    )
    notes = {n.payload for n in listener.notifies(timeout=1, stop_after=100)}
    listener.close()
    done = applied(cfg)
    assert {f"{t}:{p}:{n}" for (t, p), n in done.items() if n} <= notes
    assert audit.audit(cfg.database_url) == (True, [audit.audit(cfg.database_url)[1][0]])


def test_rebuild_equals_the_incremental_build_and_audit_passes(cfg):
    ex = history.random_history(6000, seed=7, accounts=30, symbols=4)
    encoded = history.encode(ex.events)
    running = Running(cfg, batch_records=200)
    try:
        for start in range(0, len(encoded), 1500):  # events arrive while it runs
            history.produce(cfg, encoded[start : start + 1500])
        wait_caught_up(cfg)
    finally:
        running.stop()
    incremental = contents(cfg)
    assert len(incremental["executions"]) == sum(1 for e in ex.events if e[2].endswith("Filled"))
    passed, lines = audit.audit(cfg.database_url)
    assert passed, lines

    assert service.rebuild(cfg) == len(encoded)
    assert contents(cfg) == incremental


def test_audit_names_the_culprit_of_a_tampered_history(cfg):
    ex = history.random_history(800, seed=11, accounts=10, symbols=2)
    ex.deposit("1003", 5_000_000)
    ex.events[-1][3]["cash_available"] += 1  # one unit of cash out of thin air
    ex.issue("1005", "S1", 100)
    ex.events[-1][3]["shares_available"] += 100  # shares nobody issued
    order = ex.place("1007", "S0", "BUY", 100, 10_000)
    accepted = next(e for e in ex.events if e[3].get("order_id") == order)[3]
    accepted["hold"] -= 1  # the order holds less than limit x quantity
    history.produce(cfg, history.encode(ex.events))
    running = Running(cfg)
    try:
        wait_caught_up(cfg)
    finally:
        running.stop()
    passed, lines = audit.audit(cfg.database_url)
    assert not passed
    culprits = {
        ("cash per account", "account 1003"),
        ("shares per account and symbol", "account 1005 symbol S1"),
        ("shares per symbol", "symbol S1"),
        ("each open order's hold", f"order {order} "),
    }
    for check, who in culprits:
        assert any(line.startswith(check) and who in line for line in lines), (check, lines)
    assert not any("account 1001" in line or "account 1002" in line for line in lines), lines
    cli = run_cli(cfg, "services.projector", "audit", timeout=60)
    assert cli.returncode == 1 and "account 1003" in cli.stdout, cli.stdout + cli.stderr


def test_a_writer_whose_offsets_moved_is_fenced_out(cfg):
    """A zombie (or a writer overtaken by a rebuild's swap) writes nothing and learns where the
    stored offsets are."""
    ex = history.Market()
    ex.create_account("a", 100)
    ex.deposit("a", 5)
    first, second = (rows.fold([e]) for e in history.as_events(ex.events))
    topic = cfg.topic("account.events")
    with schema.connect(cfg.database_url) as conn:
        schema.migrate(conn)
        assert store.apply(conn, "g", [store.Span(topic, 0, 0, 1)], first) is None
        stale = store.apply(conn, "g", [store.Span(topic, 0, 0, 1)], first)
        assert stale == {(topic, 0): 1}
        assert store.apply(conn, "g", [store.Span(topic, 0, 1, 2)], second) is None
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 2
        assert conn.execute("SELECT available FROM balances").fetchone()[0] == 105


def waiting_on(conn: psycopg.Connection, pid: int) -> str | None:
    found = conn.execute(
        "SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)
    ).fetchone()
    return f"{found[0]}:{found[1]}" if found and found[0] else None


def test_a_swap_waits_for_the_batch_being_written_into_the_tables_it_replaces(cfg):
    """A batch's statements find their tables by name: a rebuild's swap committed between two of
    them would send the rest of the batch into the swapped-in tables, past the fence. A batch is
    held mid-write here (a table it appends to is locked); the swap must wait for it, and the
    batch's next write after the swap is fenced by the new tables' offsets."""
    ex = history.Market()
    ex.create_account("a", 100)
    ex.deposit("a", 5)
    ex.deposit("a", 7)
    first, second, third = (rows.fold([e]) for e in history.as_events(ex.events))
    topic = cfg.topic("account.events")
    with (
        schema.connect(cfg.database_url) as writer,
        schema.connect(cfg.database_url) as holder,
        schema.connect(cfg.database_url) as swapper,
        schema.connect(cfg.database_url) as watcher,
    ):
        schema.migrate(writer)
        assert store.apply(writer, "g", [store.Span(topic, 0, 0, 1)], first) is None
        schema.drop(writer, schema.REBUILD)
        schema.migrate(writer, schema.REBUILD)  # an empty rebuild, ready to swap in
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE audit_log IN SHARE MODE")  # the batch's rows wait for it
        outcome: dict[str, object] = {}
        batch = threading.Thread(
            target=lambda: outcome.update(
                second=store.apply(writer, "g", [store.Span(topic, 0, 1, 2)], second)
            ),
            daemon=True,
        )
        batch.start()
        swap = threading.Thread(target=schema.swap_in, args=(swapper,), daemon=True)
        try:
            wait_until(
                lambda: waiting_on(watcher, writer.info.backend_pid) == "Lock:relation",
                10,
                "the batch to wait for audit_log",
            )
            swap.start()
            wait_until(
                lambda: waiting_on(watcher, swapper.info.backend_pid) == "Lock:advisory",
                10,
                "the swap to wait for the batch's schema lock",
            )
        finally:  # the batch goes on, into the tables it started in; then the swap
            holder.execute("COMMIT")
        batch.join(10)
        swap.join(10)
        assert not batch.is_alive() and not swap.is_alive()
        assert outcome["second"] is None
        # the live tables are the rebuilt ones, untouched by the batch; the next write is fenced
        assert writer.execute("SELECT count(*) FROM balances").fetchone()[0] == 0
        assert store.apply(writer, "g", [store.Span(topic, 0, 2, 3)], third) == {(topic, 0): 0}


def test_the_writers_prepared_statements_follow_a_swap_into_the_new_tables(cfg):
    """The writer's connection prepares what it runs often (schema.connect(prepare=True)). Once
    a rebuild's swap has renamed the schemas, its prepared statements must find the swapped-in
    tables by name, as unprepared ones do: the fence reads the new offsets, and the next batch
    lands in the new tables, the retired ones being dropped already."""
    ex = history.Market()
    ex.create_account("a", 100)
    for amount in range(1, 8):
        ex.deposit("a", amount)
    batches = [rows.fold([e]) for e in history.as_events(ex.events)]
    topic = cfg.topic("account.events")
    with (
        schema.connect(cfg.database_url, prepare=True) as writer,
        schema.connect(cfg.database_url) as swapper,
    ):
        schema.migrate(writer)
        for offset, batch in enumerate(batches[:-1]):  # each statement runs past the threshold
            span = store.Span(topic, 0, offset, offset + 1)
            assert store.apply(writer, "g", [span], batch) is None
        prepared = writer.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
        assert prepared >= 4  # the offsets' statements and the balance merge at least
        schema.drop(swapper, schema.REBUILD)
        schema.migrate(swapper, schema.REBUILD)  # an empty rebuild
        schema.swap_in(swapper)
        last = len(batches) - 1
        fenced = store.apply(writer, "g", [store.Span(topic, 0, last, last + 1)], batches[-1])
        assert fenced == {(topic, 0): 0}  # read through the prepared lock on the new offsets
        assert store.apply(writer, "g", [store.Span(topic, 0, 0, 1)], batches[0]) is None
        assert store.apply(writer, "g", [store.Span(topic, 0, 1, 2)], batches[1]) is None
        balances = swapper.execute("SELECT count(*), sum(available) FROM balances").fetchone()
        offsets = swapper.execute("SELECT next_offset FROM applied_offsets").fetchall()
    assert offsets == [(2,)]
    assert balances == (1, 101)  # the account (100) and the first deposit (1)


def test_a_live_projector_fenced_out_goes_back_to_the_stored_offsets(cfg):
    """As after a rebuild's swap: the stored offsets moved under a running projector (here: back
    to an empty projection); its next batch is refused and it continues from the stored ones."""
    ex = history.random_history(3000, seed=23, accounts=20, symbols=3)
    encoded = history.encode(ex.events)
    history.produce(cfg, encoded[:2000])
    running = Running(cfg)
    try:
        wait_caught_up(cfg)
        with schema.connect(cfg.database_url) as conn, conn.transaction():
            names = [t for t in schema.tables(conn) if t != "applied_offsets"]
            conn.execute(f"TRUNCATE {', '.join(names)}")
            conn.execute("UPDATE applied_offsets SET next_offset = 0")
        history.produce(cfg, encoded[2000:])
        wait_caught_up(cfg)
    finally:
        running.stop()
    assert running.projector.reseeks >= 1
    fills = sum(1 for e in ex.events if e[2].endswith("OrderFilled"))
    assert query(cfg, "SELECT count(*) FROM executions")[0][0] == fills
    built = contents(cfg)
    service.rebuild(cfg)
    assert contents(cfg) == built
