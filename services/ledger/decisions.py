"""What the ledger core emits: decisions as plain tuples, cheap to make in the hot path.

A decision is ``(topic role, key, record name, values)``: ``values`` are the record's fields in
the order of its Avro schema (``FIELDS[record name]``, read from ``schemas/``), starting with the
envelope of the input record that caused it. The envelope is re-keyed to the decision's key when
it is rendered (``as_record``), so the core never copies an envelope. The shell encodes the values
with the shared codec's values encoder (``services.ledger.service.Wire``).
"""

from __future__ import annotations

from services.common.codec import record_fields

ACCOUNT_EVENTS = "account.events"
MATCH_COMMANDS = "match.commands"

A = "marketlog.account."
M = "marketlog.match."
# every record the core emits -> its field names: its values tuples follow the schema's order
FIELDS: dict[str, tuple[str, ...]] = {}


def _emitted(name: str) -> str:
    FIELDS[name] = record_fields(name)
    return name


ACCOUNT_CREATED = _emitted(A + "AccountCreated")
CASH_DEPOSITED = _emitted(A + "CashDeposited")
CASH_WITHDRAWN = _emitted(A + "CashWithdrawn")
COMMAND_REJECTED = _emitted(A + "CommandRejected")
ORDER_ACCEPTED = _emitted(A + "OrderAccepted")
ORDER_CLOSED = _emitted(A + "OrderClosed")
ORDER_FILLED = _emitted(A + "OrderFilled")
ORDER_REDUCED = _emitted(A + "OrderReduced")
ORDER_PLACED = _emitted(A + "OrderPlaced")
SHARES_ISSUED = _emitted(A + "SharesIssued")
SYMBOL_CREATED = _emitted(A + "SymbolCreated")
MATCH_PLACE = _emitted(M + "PlaceOrder")
MATCH_CANCEL = _emitted(M + "CancelOrder")
MATCH_REDUCE = _emitted(M + "ReduceOrder")
MATCH_REPLACE = _emitted(M + "ReplaceOrder")

Decision = tuple[str, str, str, tuple]


def rejected(
    env: dict, command: str, reason: str, order_id: int | None = None, duplicate: bool = False
) -> Decision:
    return (
        ACCOUNT_EVENTS,
        env["key"],
        COMMAND_REJECTED,
        (env, command, reason, order_id, duplicate),
    )


def as_record(decision: Decision) -> dict:
    """The decision as its Avro record (a dict), envelope keyed like the decision."""
    _, key, name, values = decision
    record = dict(zip(FIELDS[name], values, strict=True))
    env = values[0]
    if env["key"] != key:
        record["envelope"] = {**env, "key": key}
    return record
