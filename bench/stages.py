"""Where an order's time goes, read back from the log's own timestamps.

For every order a step placed and got answered, four stages:

- ``to_gateway``: due at the generator -> the gateway's stamp on the command (envelope ``ts``):
  the generator's send, the socket, the gateway's read and parse;
- ``gateway``: stamp -> the command appended (its CreateTime on ``ledger.commands``);
- ``to_ledger``: appended -> the ledger's OrderAccepted produced (its CreateTime on
  ``account.events``): the partition's last stable offset (a matcher transaction open on the
  same partition holds it back), the ledger's fetch, its batch window, the transaction before;
- ``commit_answer``: OrderAccepted produced -> the answer at the generator: the rest of the
  ledger's transaction, its commit markers, the gateway's tail and the reply; for XML, which is
  answered once the order is matched and settled, also the matcher's transaction (its batch
  interval) and the ledger's settlement.

CreateTime is cut to the millisecond, so stages are good to ~1 ms (a sub-millisecond stage next
to one reads about -0.5); they join on order id and command id. The slowest 1 % is split the
same way: it shows which stage makes the tail.
"""

from __future__ import annotations

from bench.loadgen import StepResult
from services.common.codec import Codec
from services.common.config import Settings
from services.common.reader import end_offsets, read_to_end

STAGES = ("to_gateway", "gateway", "to_ledger", "commit_answer")
TOPICS = ("ledger.commands", "account.events")


def log_ends(settings: Settings) -> dict[str, dict[int, int]]:
    """The end offset of every partition of the two topics: take it before a step."""
    ends = end_offsets(settings, [settings.topic(role) for role in TOPICS])
    return {
        role: {p: o for (topic, p), o in ends.items() if topic == settings.topic(role)}
        for role in TOPICS
    }


def _records(settings: Settings, role: str, start: dict[int, int]):
    """(record name, record, CreateTime ms) of the topic from `start` to its committed end."""
    codec, topic = Codec(), settings.topic(role)
    for message in read_to_end(settings, {(topic, p): o for p, o in start.items()}):
        name, record = codec.decode(message.value())
        yield name, record, message.timestamp()[1]


def split(settings: Settings, before: dict, result: StepResult) -> dict | None:
    """Per-stage p50/p99 (ms) of the step's answered orders, and the mean of each stage over
    the slowest 1 %; None when no order could be traced."""
    accepted = {
        record["order_id"]: (record["envelope"]["command_id"], created)
        for name, record, created in _records(settings, "account.events", before["account.events"])
        if name.endswith("OrderAccepted")
    }
    commands = {
        record["envelope"]["command_id"]: (record["envelope"]["ts"] / 1000, created)
        for name, record, created in _records(
            settings, "ledger.commands", before["ledger.commands"]
        )
        if name.endswith("PlaceOrder")
    }
    return breakdown(result, accepted, commands)


def breakdown(
    result: StepResult,
    accepted: dict[int, tuple[str, int]],
    commands: dict[str, tuple[float, int]],
) -> dict | None:
    """The split itself. accepted: order id -> (command id, the decision's CreateTime ms);
    commands: command id -> (the gateway's stamp ms, the command's CreateTime ms)."""
    rows = []
    for order_id, due, answered in result.answers:
        command_id, produced = accepted.get(order_id, (None, None))
        if command_id not in commands:
            continue
        stamped, appended = commands[command_id]
        due_ms = (result.wall_start + due - result.start) * 1000
        answered_ms = (result.wall_start + answered - result.start) * 1000
        stages = (stamped - due_ms, appended - stamped, produced - appended, answered_ms - produced)
        rows.append((answered_ms - due_ms, stages))
    if not rows:
        return None
    rows.sort()
    tail = [stages for _, stages in rows[int(len(rows) * 0.99) :]]
    columns = [sorted(column) for column in zip(*(stages for _, stages in rows), strict=True)]

    def pct(values: list[float], q: float) -> float:
        return round(values[min(len(values) - 1, int(len(values) * q))], 1)

    return {
        "traced": len(rows),
        **{
            name: {"p50": pct(column, 0.5), "p99": pct(column, 0.99)}
            for name, column in zip(STAGES, columns, strict=True)
        },
        "slowest_1pct_mean": {
            name: round(sum(s[i] for s in tail) / len(tail), 1) for i, name in enumerate(STAGES)
        },
    }


def describe(split: dict) -> str:
    """One line of a split, for the bench summary and bench.steady."""
    return (
        ", ".join(f"{name} p50 {split[name]['p50']} p99 {split[name]['p99']}" for name in STAGES)
        + "; slowest 1 %: "
        + ", ".join(f"{name} {ms}" for name, ms in split["slowest_1pct_mean"].items())
    )
