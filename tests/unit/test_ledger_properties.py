"""Properties of the pure ledger under any sequence of commands and settlements.

A hypothesis state machine drives the whole exchange in memory (testkit.pipeline: one to three
partitions, the real ledger and matcher cores): gateway commands are appended as the machine
decides, and the ledger and matcher partitions consume their input whenever the machine decides,
in batches it chooses, so every interleaving of commands and settlements is fair game. After every
step no balance is negative and every open order holds what its rules say; whenever nothing is
in flight cash and shares are conserved against what came in. Restarting a partition (its newest
snapshot plus a replay) keeps its state, and at the end every invariant of a settled exchange
holds (testkit.invariants), replay from scratch included.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from services.common.money import MAX_UNITS
from services.ledger import persist
from services.ledger.decisions import OrderAccepted, OrderClosed, OrderFilled, OrderReduced
from services.ledger.state import Ledger
from testkit import records as r
from testkit.audit import partition_problems
from testkit.invariants import at_rest_problems, conservation
from testkit.pipeline import LEDGER_COMMANDS, Pipeline
from testkit.simulation import Gateway

ACCOUNTS = ["a0", "a1", "a2", "a3", "a4"]
SYMBOLS = ["S0", "S1"]
TICK, LOT, MID = 100, 100, 1_000_000

amounts = st.one_of(
    st.integers(-2, 5).map(lambda n: n * 10**8),
    st.integers(1, 10**12),
    st.sampled_from([0, MAX_UNITS, MAX_UNITS // 2 + 1]),
)
lots = st.integers(1, 8).map(lambda n: n * LOT)
quantities = st.one_of(lots, st.integers(-1, 1000), st.just(MAX_UNITS))
near = st.integers(-5, 5).map(lambda n: MID + n * TICK)
prices = st.one_of(near, st.sampled_from([0, 1, 10**15, MAX_UNITS]))
traders = st.sampled_from(ACCOUNTS[:3])
sides = st.sampled_from(["BUY", "SELL"])


class LedgerMachine(RuleBasedStateMachine):
    @initialize(partitions=st.integers(1, 3), snapshot_every=st.sampled_from([0, 1, 5]))
    def start(self, partitions: int, snapshot_every: int) -> None:
        self.pipeline = Pipeline(partitions, snapshot_every=snapshot_every, project=False)
        self.gw = Gateway(self.pipeline)
        for symbol in SYMBOLS:  # a listed market with a few funded traders to start from
            self.send(r.create_symbol(self.env(symbol), TICK, LOT))
        for account in ACCOUNTS[:3]:
            self.send(r.create_account(self.env(account), 10**12))
            for symbol in SYMBOLS:
                self.send(r.issue_shares(self.env(account), symbol, 50 * LOT))

    def env(self, key: str) -> dict:
        return self.gw.envelope(key)

    def send(self, command: r.Command) -> None:
        self.gw.send(command)

    # -- gateway commands ------------------------------------------------------------------------
    @rule(account=st.sampled_from(ACCOUNTS), balance=amounts)
    def create_account(self, account, balance):
        self.send(r.create_account(self.env(account), balance))

    @rule(account=st.sampled_from(ACCOUNTS), amount=amounts, out=st.booleans())
    def move_cash(self, account, amount, out):
        command = r.withdraw if out else r.deposit
        self.send(command(self.env(account), amount))

    @rule(
        symbol=st.sampled_from(SYMBOLS),
        tick=st.sampled_from([0, 1, TICK]),
        lot=st.sampled_from([1, LOT]),
    )
    def create_symbol(self, symbol, tick, lot):
        self.send(r.create_symbol(self.env(symbol), tick, lot))

    @rule(
        account=st.sampled_from(ACCOUNTS),
        symbol=st.sampled_from([*SYMBOLS, "NO"]),
        qty=st.one_of(quantities, st.just(MAX_UNITS)),
    )
    def issue(self, account, symbol, qty):
        self.send(r.issue_shares(self.env(account), symbol, qty))

    @rule(
        account=traders,
        symbol=st.sampled_from(SYMBOLS),
        side=sides,
        qty=lots,
        price=near,
        tif=st.sampled_from(["GTC", "GTC", "GTC", "IOC", "FOK", "GTD"]),
        client_order_id=st.sampled_from(["", "", "", "k1", "k2"]),
        lasts=st.integers(1, 20),  # commands (1 ms each) before a GTD order expires
    )
    def place_limit(self, account, symbol, side, qty, price, tif, client_order_id, lasts):
        env = self.env(account)
        expire_ts = env["ts"] + lasts * 1000 if tif == "GTD" else None
        terms = {"tif": tif, "expire_ts": expire_ts, "client_order_id": client_order_id}
        self.send(r.place_order(env, symbol, side, qty, price, **terms))

    @rule(
        account=traders,
        symbol=st.sampled_from(SYMBOLS),
        side=sides,
        qty=lots,
        budget=st.integers(1, 10).map(lambda n: n * LOT * MID),
        tif=st.sampled_from(["GTC", "IOC", "FOK"]),
    )
    def place_market(self, account, symbol, side, qty, budget, tif):
        budget = budget if side == "BUY" else None
        self.send(r.place_order(self.env(account), symbol, side, qty, None, tif=tif, budget=budget))

    @rule(
        account=st.sampled_from(ACCOUNTS),
        symbol=st.sampled_from([*SYMBOLS, "NO"]),
        side=sides,
        qty=quantities,
        price=st.one_of(st.none(), prices),
        tif=st.sampled_from(["GTC", "IOC", "FOK", "GTD"]),
        expire_ts=st.one_of(st.none(), st.integers(0, 2**62)),
        post_only=st.booleans(),
        budget=st.one_of(st.none(), amounts),
        client_order_id=st.sampled_from(["", "k1", "k2"]),
    )
    def place_anything(
        self, account, symbol, side, qty, price, tif, expire_ts, post_only, budget, client_order_id
    ):
        terms = {"tif": tif, "expire_ts": expire_ts, "post_only": post_only, "budget": budget}
        command = r.place_order(
            self.env(account), symbol, side, qty, price, client_order_id=client_order_id, **terms
        )
        self.send(command)

    @rule(
        data=st.data(),
        qty=st.one_of(lots, quantities),
        price=st.one_of(near, prices),
        kind=st.sampled_from(["cancel", "cancel", "reduce", "replace"]),
        owner=st.integers(0, 9),
    )
    def amend(self, data, qty, price, kind, owner):
        account, order_id = self.pick_order(data)
        env = self.env(account if owner else data.draw(st.sampled_from(ACCOUNTS)))
        if kind == "cancel":
            self.send(r.cancel_order(env, order_id))
        elif kind == "reduce":
            self.send(r.reduce_order(env, order_id, qty))
        else:
            self.send(r.replace_order(env, order_id, price, qty))

    @precondition(lambda self: any(ledger.orders for ledger in self.pipeline.ledgers()))
    @rule(data=st.data(), kind=st.sampled_from(["cancel", "reduce", "replace"]), price=near)
    def amend_open_order(self, data, kind, price):
        """The owner amends one of its open orders: reduce by a lot, replace near the market."""
        orders = sorted(
            (o.account.id, o.id)
            for ledger in self.pipeline.ledgers()
            for o in ledger.orders.values()
        )
        account, order_id = data.draw(st.sampled_from(orders))
        env = self.env(account)
        if kind == "cancel":
            self.send(r.cancel_order(env, order_id))
        elif kind == "reduce":
            self.send(r.reduce_order(env, order_id, LOT))
        else:
            self.send(r.replace_order(env, order_id, price, data.draw(lots)))

    def pick_order(self, data) -> tuple[str, int]:
        """Mostly an order that was accepted (by its owner), sometimes any id at all."""
        anything = st.tuples(st.sampled_from(ACCOUNTS), st.integers(0, 20))
        self.gw.hear()
        if not self.gw.orders:
            return data.draw(anything)
        accepted = [(account, order_id) for account, order_id, _ in self.gw.orders]
        return data.draw(st.one_of(st.sampled_from(accepted), anything))

    # -- the ledger and the matcher at work, whenever the machine says -----------------------------
    def waiting(self, stage) -> list[int]:
        return [p for p in range(self.pipeline.partitions) if stage.pending(p)]

    @precondition(lambda self: self.waiting(self.pipeline.ledger))
    @rule(data=st.data(), records=st.integers(1, 4))
    def ledger_works(self, data, records):
        """A ledger partition consumes commands and settlements, in its log order."""
        partition = data.draw(st.sampled_from(self.waiting(self.pipeline.ledger)))
        self.pipeline.ledger.step(partition, records)

    @precondition(lambda self: self.waiting(self.pipeline.matcher))
    @rule(data=st.data(), records=st.integers(1, 4))
    def matcher_works(self, data, records):
        partition = data.draw(st.sampled_from(self.waiting(self.pipeline.matcher)))
        self.pipeline.matcher.step(partition, records)

    @rule()
    def everything_settles(self):
        self.pipeline.drain()

    @rule(data=st.data(), matcher=st.booleans())
    def a_partition_restarts_from_its_snapshot(self, data, matcher):
        """Its newest snapshot (if any) and a replay of its input rebuild the same state."""
        stage = self.pipeline.matcher if matcher else self.pipeline.ledger
        partition = data.draw(st.integers(0, self.pipeline.partitions - 1))
        before = stage.states[partition].snapshot()
        if not matcher:
            ledger = self.pipeline.ledgers()[partition]
            restored = persist.load(before, partition, self.pipeline.partitions)
            assert persist.state_hash(restored) == persist.state_hash(ledger)
        stage.crash(partition)
        assert stage.states[partition].snapshot() == before

    # -- what must always hold -------------------------------------------------------------------
    @invariant()
    def balances_and_holds(self):
        for ledger in self.pipeline.ledgers():
            assert partition_problems(ledger) == []

    @invariant()
    def conservation_when_nothing_is_in_flight(self):
        if self.pipeline.quiet():
            assert conservation(self.pipeline) == []

    def teardown(self):
        if not hasattr(self, "pipeline"):
            return
        self.pipeline.drain()
        assert at_rest_problems(self.pipeline) == []  # conservation, replay, ledger = books, …
        assert_settlements_state_their_holds(self.pipeline)


def straight_run(pipeline: Pipeline) -> list[list]:
    """Each ledger partition's decisions, its core run again from scratch over its logged input
    (at rest they are the decisions the live run logged: at_rest_problems checks it)."""
    decisions = []
    for partition in range(pipeline.partitions):
        ledger = Ledger(partition, pipeline.partitions)
        inputs = pipeline.inputs(LEDGER_COMMANDS, partition)
        decisions.append([d for name, rec in inputs for d in ledger.apply(name, rec)])
    return decisions


def assert_settlements_state_their_holds(pipeline: Pipeline) -> None:
    """Each decision about an order states its hold after it, and what left the hold is what
    the fill paid (cash for a buy, shares for a sell) plus what went back: a reader can copy the
    hold and never needs the settlement rule."""
    stated: dict[int, int] = {}
    for decisions in straight_run(pipeline):
        for _, record in decisions:
            kind = type(record)
            if kind is OrderAccepted and not record.duplicate:
                stated[record.order_id] = record.hold
            elif kind is OrderFilled:
                paid = record.price * record.qty if record.side == "BUY" else record.qty
                before = stated[record.order_id]
                assert before - record.hold == paid + record.released, record
                assert record.released >= 0 and (record.remaining or record.hold == 0)
                stated[record.order_id] = record.hold
            elif kind is OrderReduced:
                assert stated[record.order_id] - record.hold == record.released, record
                stated[record.order_id] = record.hold
            elif kind is OrderClosed:
                assert stated[record.order_id] == record.released, record
                stated[record.order_id] = 0
    held = {oid: o.hold for ledger in pipeline.ledgers() for oid, o in ledger.orders.items()}
    assert {oid: hold for oid, hold in stated.items() if oid in held} == held
    assert all(hold == 0 for oid, hold in stated.items() if oid not in held)


LedgerMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_ledger_state_machine = LedgerMachine.TestCase
