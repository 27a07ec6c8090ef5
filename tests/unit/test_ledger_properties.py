"""Properties of the pure ledger under any sequence of commands and settlements.

A hypothesis state machine drives an offline exchange (services.ledger.simulation): one to three
ledger partitions and a toy matcher whose settlements (fills at prices within the limits, closes,
reductions, refusals) reach the ledger whenever the machine decides, so every interleaving of
commands and settlements is fair game. After every step no balance is negative and every open
order holds what its rules say; whenever no settlement is in flight cash and shares are conserved
against what came in. Restarting a partition from its snapshot keeps its state hash, and replaying
each partition's input into a fresh ledger gives the same decisions.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from services.common.money import MAX_UNITS
from services.ledger import persist
from services.ledger import records as r
from services.ledger.audit import partition_problems
from services.ledger.decisions import as_record
from services.ledger.simulation import Exchange
from services.ledger.state import Ledger

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
    @initialize(partitions=st.integers(1, 3))
    def start(self, partitions: int) -> None:
        self.ex = Exchange(partitions)
        for symbol in SYMBOLS:  # a listed market with a few funded traders to start from
            self.ex.submit(r.create_symbol(self.env(symbol), TICK, LOT))
        for account in ACCOUNTS[:3]:
            self.ex.submit(r.create_account(self.env(account), 10**12))
            for symbol in SYMBOLS:
                self.ex.submit(r.issue_shares(self.env(account), symbol, 50 * LOT))

    def env(self, key: str) -> dict:
        return self.ex.envelope(key)

    # -- gateway commands ------------------------------------------------------------------------
    @rule(account=st.sampled_from(ACCOUNTS), balance=amounts)
    def create_account(self, account, balance):
        self.ex.submit(r.create_account(self.env(account), balance))

    @rule(account=st.sampled_from(ACCOUNTS), amount=amounts, out=st.booleans())
    def move_cash(self, account, amount, out):
        command = r.withdraw if out else r.deposit
        self.ex.submit(command(self.env(account), amount))

    @rule(
        symbol=st.sampled_from(SYMBOLS),
        tick=st.sampled_from([0, 1, TICK]),
        lot=st.sampled_from([1, LOT]),
    )
    def create_symbol(self, symbol, tick, lot):
        self.ex.submit(r.create_symbol(self.env(symbol), tick, lot))

    @rule(
        account=st.sampled_from(ACCOUNTS),
        symbol=st.sampled_from([*SYMBOLS, "NO"]),
        qty=st.one_of(quantities, st.just(MAX_UNITS)),
    )
    def issue(self, account, symbol, qty):
        self.ex.submit(r.issue_shares(self.env(account), symbol, qty))

    @rule(
        account=traders,
        symbol=st.sampled_from(SYMBOLS),
        side=sides,
        qty=lots,
        price=near,
        tif=st.sampled_from(["GTC", "GTC", "GTC", "IOC", "FOK", "GTD"]),
        client_order_id=st.sampled_from(["", "", "", "k1", "k2"]),
    )
    def place_limit(self, account, symbol, side, qty, price, tif, client_order_id):
        env = self.env(account)
        expire_ts = env["ts"] + 10**6 if tif == "GTD" else None
        terms = {"tif": tif, "expire_ts": expire_ts, "client_order_id": client_order_id}
        self.ex.submit(r.place_order(env, symbol, side, qty, price, **terms))

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
        self.ex.submit(
            r.place_order(self.env(account), symbol, side, qty, None, tif=tif, budget=budget)
        )

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
        self.ex.submit(command)

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
            self.ex.submit(r.cancel_order(env, order_id))
        elif kind == "reduce":
            self.ex.submit(r.reduce_order(env, order_id, qty))
        else:
            self.ex.submit(r.replace_order(env, order_id, price, qty))

    @precondition(lambda self: any(ledger.orders for ledger in self.ex.ledgers))
    @rule(data=st.data(), kind=st.sampled_from(["cancel", "reduce", "replace"]), price=near)
    def amend_open_order(self, data, kind, price):
        """The owner amends one of its open orders: reduce by a lot, replace near the market."""
        orders = sorted(
            (o.account.id, o.id) for ledger in self.ex.ledgers for o in ledger.orders.values()
        )
        account, order_id = data.draw(st.sampled_from(orders))
        env = self.env(account)
        if kind == "cancel":
            self.ex.submit(r.cancel_order(env, order_id))
        elif kind == "reduce":
            self.ex.submit(r.reduce_order(env, order_id, LOT))
        else:
            self.ex.submit(r.replace_order(env, order_id, price, data.draw(lots)))

    def pick_order(self, data) -> tuple[str, int]:
        """Mostly an order that was accepted (by its owner), sometimes any id at all."""
        anything = st.tuples(st.sampled_from(ACCOUNTS), st.integers(0, 20))
        if not self.ex.recent_orders:
            return data.draw(anything)
        return data.draw(st.one_of(st.sampled_from(list(self.ex.recent_orders)), anything))

    # -- the matcher and its settlements, whenever they happen -------------------------------------
    @precondition(lambda self: self.ex.to_match)
    @rule(steps=st.integers(1, 4))
    def matcher_works(self, steps):
        for _ in range(steps):
            self.ex.match_next()

    @precondition(lambda self: any(self.ex.to_settle))
    @rule(data=st.data())
    def settlement_arrives(self, data):
        waiting = [p for p in range(self.ex.partitions) if self.ex.to_settle[p]]
        partition = data.draw(st.sampled_from(waiting))
        for _ in range(data.draw(st.integers(1, 3))):
            self.ex.settle_next(partition)

    @precondition(lambda self: self.ex.matcher.resting)
    @rule(data=st.data())
    def an_order_expires(self, data):
        self.ex.expire(data.draw(st.sampled_from(sorted(self.ex.matcher.resting))))

    @rule()
    def everything_settles(self):
        self.ex.drain()

    @rule(data=st.data())
    def a_partition_restarts_from_its_snapshot(self, data):
        partition = data.draw(st.integers(0, self.ex.partitions - 1))
        ledger = self.ex.ledgers[partition]
        restored = persist.load(persist.dump(ledger), partition, self.ex.partitions)
        assert persist.state_hash(restored) == persist.state_hash(ledger)
        assert persist.dump(
            persist.load(persist.dump(restored), partition, self.ex.partitions)
        ) == persist.dump(ledger)
        self.ex.ledgers[partition] = restored

    # -- what must always hold -------------------------------------------------------------------
    @invariant()
    def balances_and_holds(self):
        for ledger in self.ex.ledgers:
            assert partition_problems(ledger) == []

    @invariant()
    def conservation_when_nothing_is_in_flight(self):
        if self.ex.quiet():
            assert_conserved(self.ex)

    def teardown(self):
        if not hasattr(self, "ex"):
            return
        self.ex.drain()
        assert_conserved(self.ex)
        assert_replays_identically(self.ex)


def assert_conserved(ex: Exchange) -> None:
    """What came in (decisions on the log) equals what the accounts hold, cash and shares."""
    came_in, issued = 0, Counter()
    for decisions in ex.decisions:
        for _, _, name, values in decisions:
            kind = name.rsplit(".", 1)[1]
            if kind in ("AccountCreated", "CashDeposited"):
                came_in += values[1]
            elif kind == "CashWithdrawn":
                came_in -= values[1]
            elif kind == "SharesIssued":
                issued[values[1]] += values[2]
    accounts = [a for ledger in ex.ledgers for a in ledger.accounts.values()]
    assert came_in == sum(a.cash + a.held for a in accounts)
    owned = Counter()
    for acct in accounts:
        for symbol, pos in acct.positions.items():
            owned[symbol] += pos.available + pos.held
    assert +issued == +owned
    assert sum(ledger.cash_supply for ledger in ex.ledgers) == came_in


def assert_replays_identically(ex: Exchange) -> None:
    for partition in range(ex.partitions):
        fresh = Ledger(partition, ex.partitions)
        replayed = [d for p, name, rec in ex.log if p == partition for d in fresh.apply(name, rec)]
        assert [as_record(d) for d in replayed] == [as_record(d) for d in ex.decisions[partition]]
        assert persist.state_hash(fresh) == persist.state_hash(ex.ledgers[partition])


LedgerMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_ledger_state_machine = LedgerMachine.TestCase
