"""The architecture page's invariants, checked over a Pipeline. Each returns a list of problems.

Always (after any step): ``ledger_problems`` (no negative balance, every open order holds what its
rules say, held = the sum of the open orders' holds) and ``book_problems`` (best bid < best ask).
At rest (nothing waiting anywhere): ``at_rest_problems``: cash and shares conserved, the ledger's
open orders are the matcher's resting orders, no settlement ever refused and every refusal naming
the command it answers, the projection equal to a rebuild from offset zero and to what the cores
hold, and ``replay_problems``: every processor's core re-run from scratch over its logged input
produces the logged outputs byte for byte (record by record, as the determinism audits `verify`
do on Kafka) and ends in the same state.
"""

from __future__ import annotations

from collections import Counter

from services.common.processor import PartitionState

from .audit import conservation_problems, partition_problems
from .log import partition_for
from .pipeline import ACCOUNT_EVENTS, LEDGER_COMMANDS, Pipeline, Stage, rebuilt
from .projection import HOLD, OPEN_QTY, Tables

A = "marketlog.account."
SETTLEMENTS = {"Fill", "OrderClosed", "OrderReduced"}  # refused only if ledger and matcher differ
GATEWAY_COMMANDS = {
    "CreateAccount", "Deposit", "Withdraw", "CreateSymbol", "IssueShares",
    "PlaceOrder", "CancelOrder", "ReduceOrder", "ReplaceOrder",
}  # fmt: skip


def ledger_problems(pipeline: Pipeline, partition: int | None = None) -> list[str]:
    ledgers = pipeline.ledgers()
    chosen = ledgers if partition is None else [ledgers[partition]]
    return [
        f"ledger {ledger.partition}: {p}" for ledger in chosen for p in partition_problems(ledger)
    ]


def book_problems(pipeline: Pipeline) -> list[str]:
    problems = []
    for symbol, book in pipeline.books().items():
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None and bid >= ask:
            problems.append(f"book {symbol} crossed: best bid {bid} >= best ask {ask}")
    return problems


def at_rest_problems(pipeline: Pipeline) -> list[str]:
    """Everything, once every stage has consumed everything."""
    if not pipeline.quiet():
        return ["not at rest: input is waiting"]
    problems = ledger_problems(pipeline) + book_problems(pipeline)
    problems += conservation(pipeline) + agreement(pipeline) + refusals(pipeline)
    problems += replay_problems(pipeline)
    if pipeline.projector is not None:
        problems += projection_problems(pipeline)
    return problems


def conservation(pipeline: Pipeline) -> list[str]:
    """What came in (as account.events says) is what the accounts hold, cash and shares."""
    ledgers = pipeline.ledgers()
    problems = conservation_problems(ledgers)
    came_in, issued = 0, Counter()
    for _, _, name, record in pipeline.records(ACCOUNT_EVENTS):
        if name == A + "AccountCreated":
            came_in += record["balance"]
        elif name == A + "CashDeposited":
            came_in += record["amount"]
        elif name == A + "CashWithdrawn":
            came_in -= record["amount"]
        elif name == A + "SharesIssued":
            issued[record["symbol"]] += record["qty"]
        else:
            came_in += day_trading_cash(name, record)
    held = sum(a.cash + a.held for ledger in ledgers for a in ledger.accounts.values())
    if came_in != held:
        problems.append(f"cash: account.events brought in {came_in}, accounts hold {held}")
    owned = Counter()
    for ledger in ledgers:
        for acct in ledger.accounts.values():
            for symbol, pos in acct.positions.items():
                owned[symbol] += pos.available + pos.held
    if +issued != +owned:
        problems.append(f"shares: account.events issued {dict(issued)}, accounts own {dict(owned)}")
    return problems


def day_trading_cash(name: str, record: dict) -> int:
    """Cash a day-trading decision brought in (ADD) or moved to (−) or from (+) the outside
    market (COMMIT_BUY, COMMIT_SELL, trigger executions)."""
    if name == A + "TriggerFired":
        return record["funds"] if record["side"] == "SELL" else -record["funds"]
    if name != A + "DayTradeDecided" or not record["ok"]:
        return 0
    command = record["command"]
    if command == "ADD":
        return record["amount"]
    if command == "COMMIT_BUY":
        return -record["funds"]
    return record["funds"] if command == "COMMIT_SELL" else 0


def agreement(pipeline: Pipeline) -> list[str]:
    """The ledger's open orders are exactly the matcher's resting ones, with the same quantity;
    no cancel, reduce or replace is still waiting for the matcher's answer."""
    open_orders = {
        o.id: o.remaining for ledger in pipeline.ledgers() for o in ledger.orders.values()
    }
    resting = {oid: o[0] for book in pipeline.books().values() for oid, o in book.orders.items()}
    problems = []
    for oid in sorted(set(open_orders) | set(resting)):
        if open_orders.get(oid) != resting.get(oid):
            problems.append(
                f"order {oid}: the ledger has {open_orders.get(oid)} open, "
                f"the book {resting.get(oid)} resting"
            )
    for ledger in pipeline.ledgers():
        if ledger.forwarded:
            problems.append(f"ledger {ledger.partition}: unanswered {sorted(ledger.forwarded)}")
    return problems


def refusals(pipeline: Pipeline) -> list[str]:
    """A settlement the ledger refuses means the ledger and the matcher disagree: never. Any other
    refusal names the command it answers: the gateway command with its command id."""
    sent = {
        record["envelope"]["command_id"]: name.rsplit(".", 1)[1]
        for _, _, name, record in pipeline.records(LEDGER_COMMANDS)
        if name.rsplit(".", 1)[1] in GATEWAY_COMMANDS
    }
    problems = []
    for p, offset, name, record in pipeline.records(ACCOUNT_EVENTS):
        if name != A + "CommandRejected":
            continue
        where, command = f"account.events[{p}]@{offset}", record["command"]
        if command in SETTLEMENTS:
            problems.append(f"{where}: settlement refused: {command}: {record['reason']}")
        elif sent.get(record["envelope"]["command_id"]) != command:
            was = sent.get(record["envelope"]["command_id"])
            problems.append(f"{where}: a {was} answered as a refused {command}")
    return problems


def replay_problems(pipeline: Pipeline) -> list[str]:
    """Each stage's core from scratch over each input partition, outputs compared by input
    record (topic, key, partition, bytes), then the final states' snapshots."""
    problems = []
    for stage in (pipeline.ledger, pipeline.matcher):
        logged = _outputs_by_cause(pipeline, stage)
        for partition in range(stage.partitions):
            fresh = stage.core.fresh(partition, stage.partitions)
            problems += _replay_partition(pipeline, stage, partition, fresh, logged)
    return problems


def _outputs_by_cause(pipeline: Pipeline, stage: Stage) -> dict[tuple, list[tuple]]:
    found: dict[tuple, list[tuple]] = {}
    for topic, partitions in pipeline.log.topics.items():
        for p, part in enumerate(partitions):
            for record in part.read(part.start):
                cause = record.cause
                if cause is not None and cause[0] == stage.input:
                    found.setdefault(cause, []).append(
                        (record.stamp, topic, record.key, p, record.value)
                    )
    return {cause: [out[1:] for out in sorted(outs)] for cause, outs in found.items()}


def _replay_partition(
    pipeline: Pipeline, stage: Stage, partition: int, fresh: PartitionState, logged: dict
) -> list[str]:
    parts = pipeline.partitions
    for offset, record in enumerate(pipeline.log.read(stage.input, partition)):
        cause = (stage.input, partition, offset)
        again = [
            (o.topic, o.key, partition_for(o.key, parts) if o.partition is None else o.partition,
             o.value)
            for o in fresh.apply(record.value)
        ]  # fmt: skip
        if again != logged.get(cause, []):
            return [f"{stage.name}: replaying {cause} gives other outputs than were logged"]
    if fresh.snapshot() != stage.states[partition].snapshot():
        return [f"{stage.name} partition {partition}: the replayed state differs from the live one"]
    return []


def projection_problems(pipeline: Pipeline) -> list[str]:
    """The incrementally built tables equal a rebuild and what the cores hold."""
    tables = pipeline.projector.tables
    problems = [f"projection: {p}" for p in tables.problems]
    again = rebuilt(pipeline.log, pipeline.partitions)
    problems += [f"rebuild: {p}" for p in again.problems]
    for name in (
        "appended",
        "symbols",
        "orders",
        "balances",
        "positions",
        "levels",
        "books",
        "stats",
    ):
        if getattr(again, name) != getattr(tables, name):
            problems.append(f"projection: the rebuilt {name} differ from the incremental ones")
    return problems + projection_vs_cores(pipeline, tables)


def projection_vs_cores(pipeline: Pipeline, tables: Tables) -> list[str]:
    problems = []
    ledgers = pipeline.ledgers()
    accounts = {a.id: a for ledger in ledgers for a in ledger.accounts.values()}
    balances = {k: v[:2] for k, v in tables.balances.items()}
    if balances != {k: [a.cash, a.held] for k, a in accounts.items()}:
        problems.append("projection: balances differ from the ledger's")
    positions = {k: v[:2] for k, v in tables.positions.items() if v[:2] != [0, 0]}
    held = {
        (a.id, s): [p.available, p.held]
        for a in accounts.values()
        for s, p in a.positions.items()
        if (p.available, p.held) != (0, 0)
    }
    if positions != held:
        problems.append("projection: positions differ from the ledger's")
    live = {o.id: (o.remaining, o.hold) for ledger in ledgers for o in ledger.orders.values()}
    for oid, row in tables.orders.items():
        if (row[OPEN_QTY], row[HOLD]) != live.pop(oid, (0, 0)):
            problems.append(f"projection: order {oid} open/hold {row[OPEN_QTY]}/{row[HOLD]}")
    problems += [f"projection: open order {oid} has no row" for oid in live]
    levels = {}
    for symbol, book in pipeline.books().items():
        for side in ("BUY", "SELL"):
            for price, qty in book.depth(side):
                if qty:
                    levels[(symbol, side, price)] = qty
    if {k: v[0] for k, v in tables.levels.items()} != levels:
        problems.append("projection: book levels differ from the matcher's books")
    seqs = {s: b.seq for s, b in pipeline.books().items() if b.seq}
    if {s: b[0] for s, b in tables.books.items()} != seqs:
        problems.append("projection: book sequence numbers differ from the matcher's")
    return problems
