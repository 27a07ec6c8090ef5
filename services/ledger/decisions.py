"""What the ledger core emits: decisions as plain tuples, cheap to make in the hot path.

A decision is ``(topic role, key, record name, values)``: ``values`` are the record's fields in
the order of ``FIELDS[record name]`` (the Avro schema's order), starting with the envelope of the
input record that caused it. The envelope is re-keyed to the decision's key when it is rendered
(``as_record``), so the core never copies an envelope. ``services.ledger.wire`` encodes them.
"""

from __future__ import annotations

ACCOUNT_EVENTS = "account.events"
MATCH_COMMANDS = "match.commands"

A = "marketlog.account."
M = "marketlog.match."

ACCOUNT_CREATED = A + "AccountCreated"
CASH_DEPOSITED = A + "CashDeposited"
CASH_WITHDRAWN = A + "CashWithdrawn"
COMMAND_REJECTED = A + "CommandRejected"
ORDER_ACCEPTED = A + "OrderAccepted"
ORDER_CLOSED = A + "OrderClosed"
ORDER_FILLED = A + "OrderFilled"
ORDER_REDUCED = A + "OrderReduced"
SHARES_ISSUED = A + "SharesIssued"
SYMBOL_CREATED = A + "SymbolCreated"
MATCH_PLACE = M + "PlaceOrder"
MATCH_CANCEL = M + "CancelOrder"
MATCH_REDUCE = M + "ReduceOrder"
MATCH_REPLACE = M + "ReplaceOrder"

BALANCES = ("cash_available", "cash_held", "shares_available", "shares_held")
FIELDS: dict[str, tuple[str, ...]] = {
    ACCOUNT_CREATED: ("envelope", "balance", "api_key_hash"),
    CASH_DEPOSITED: ("envelope", "amount", "cash_available"),
    CASH_WITHDRAWN: ("envelope", "amount", "cash_available"),
    COMMAND_REJECTED: ("envelope", "command", "reason", "order_id", "duplicate"),
    ORDER_ACCEPTED: (
        "envelope",
        "order_id",
        "client_order_id",
        "symbol",
        "side",
        "price",
        "qty",
        "tif",
        "expire_ts",
        "post_only",
        "stp",
        "budget",
        "hold",
        "replaces",
        "duplicate",
        *BALANCES,
    ),
    ORDER_CLOSED: (
        "envelope",
        "order_id",
        "symbol",
        "side",
        "qty",
        "reason",
        "released",
        *BALANCES,
    ),
    ORDER_FILLED: (
        "envelope",
        "order_id",
        "symbol",
        "side",
        "price",
        "qty",
        "remaining",
        "seq",
        "role",
        *BALANCES,
    ),
    ORDER_REDUCED: (
        "envelope",
        "order_id",
        "symbol",
        "side",
        "qty",
        "remaining",
        "released",
        *BALANCES,
    ),
    SHARES_ISSUED: ("envelope", "symbol", "qty", "shares_available"),
    SYMBOL_CREATED: ("envelope", "tick", "lot", "created"),
    MATCH_PLACE: (
        "envelope",
        "account",
        "order_id",
        "side",
        "price",
        "qty",
        "tif",
        "expire_ts",
        "post_only",
        "stp",
        "budget",
        "lot",
    ),
    MATCH_CANCEL: ("envelope", "account", "order_id"),
    MATCH_REDUCE: ("envelope", "account", "order_id", "qty"),
    MATCH_REPLACE: ("envelope", "account", "order_id", "new_order_id", "price", "qty"),
}

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
