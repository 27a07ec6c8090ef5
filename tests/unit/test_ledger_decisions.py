"""The ledger's typed decisions are its Avro records: same fields, same order; the core is pure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services.common.codec import ROOT, SCHEMA_DIR
from services.ledger import decisions
from services.ledger.accounts import Account, Order
from services.ledger.decisions import ACCOUNT_EVENTS, EMITTED, MATCH_COMMANDS
from services.ledger.trading import Pending

TOPIC_OF_NAMESPACE = {"marketlog.account": ACCOUNT_EVENTS, "marketlog.match": MATCH_COMMANDS}


def schema_fields(name: str) -> tuple[str, ...]:
    schema = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())
    return tuple(field["name"] for field in schema["fields"])


@pytest.mark.parametrize("kind", list(EMITTED), ids=lambda kind: kind.__name__)
def test_each_decision_has_its_schemas_fields_in_order(kind):
    topic, name = EMITTED[kind]
    assert kind._fields == schema_fields(name)
    assert topic == TOPIC_OF_NAMESPACE[name.rsplit(".", 1)[0]]


def test_every_record_of_account_events_and_match_commands_is_a_decision():
    emitted = {name for _, name in EMITTED.values()}
    on_those_topics = {
        path.stem
        for path in SCHEMA_DIR.glob("*.avsc")
        if path.stem.rsplit(".", 1)[0] in TOPIC_OF_NAMESPACE
    }
    assert emitted == on_those_topics
    assert len(emitted) == len(EMITTED)  # one record type per decision, none shared


def test_the_accepted_terms_are_the_acceptance_from_order_id_to_hold():
    fields = decisions.OrderAccepted._fields
    start, end = fields.index("order_id"), fields.index("hold") + 1
    assert decisions.AcceptedTerms._fields == fields[start:end]


def test_the_pure_core_imports_no_codec():
    """state, decisions and accounts load without the codec, the Avro compiler or fastavro."""
    code = (
        "import sys\n"
        "import services.ledger.state, services.ledger.decisions, services.ledger.accounts\n"
        "print(sorted(m for m in sys.modules if m.startswith(('fastavro', 'services.common.'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out.replace("'", '"')) == ["services.common.money"]


def every_decision() -> list[decisions.Decision]:
    """One decision from each builder, about a buy and a sell order."""
    env = {"command_id": "c1", "key": "a", "ts": 5, "reply_to": ""}
    acct = Account("a", 10_000)
    pos = acct.position("X")
    terms = ("GTC", None, False, "NONE")
    buy = Order(1, acct, "X", True, 100, 7, 700, terms)
    sell = Order(2, acct, "X", False, None, 3, 3, terms)
    fill = {"side": "BUY", "price": 90, "qty": 2, "seq": 4, "role": "MAKER"}
    placed = {"order_id": 1, "symbol": "X", "side": "BUY", "open_qty": 7, "seq": 4}
    _, acceptance = decisions.accepted(env, buy, "k", None, None)
    return [
        decisions.rejected(env, "Deposit", "why"),
        decisions.account_created(env, acct, ""),
        decisions.cash_deposited(env, acct, 5),
        decisions.cash_withdrawn(env, acct, 5),
        decisions.symbol_created(env, "X", 1, 1, True),
        decisions.shares_issued(env, acct, "X", 3, pos),
        decisions.accepted(env, sell, "", None, 1),
        decisions.duplicate(env, acct, decisions.accepted_terms(acceptance)),
        decisions.duplicate(env, acct, "refused before"),
        decisions.filled(env, buy, fill, 20),
        decisions.reduced(env, sell, 1, 1),
        decisions.closed(env, buy, "USER", 500),
        decisions.placed(env, {**placed, "settlements": 0}),
        decisions.forward_place(env, buy, None, 1),
        decisions.forward_cancel(env, buy),
        decisions.forward_reduce(env, sell, 1),
        decisions.forward_replace(env, buy, sell),
        *day_trading_decisions(env, acct),
    ]


def day_trading_decisions(env: dict, acct: Account) -> list[decisions.Decision]:
    entry = Pending("X", 2, 300, 5, 9)
    quote = {"price": 300, "symbol": "X", "user": "a", "quote_server_time": 0, "cryptokey": "",
             "hit": True}  # fmt: skip
    command = {"command": "BUY", "user": "a", "txn": 9, "symbol": "X", "amount": 70_000,
               "trigger": None, "filename": None, "quote": quote}  # fmt: skip
    outcome = decisions.TradeOutcome(True, shares=2, price=300, funds=60_000, cash_change=-60_000)
    return [
        decisions.day_trade_decided(env, command, outcome, acct.cash, acct.held),
        decisions.pending_expired(env, acct, "BUY", entry, entry.funds),
        decisions.trigger_fired(env, acct, "SELL", "X", (2, 300, 60_000), 9, 60_000),
        decisions.quote_ticked({**env, "key": "X"}, quote),
    ]


def test_every_builder_makes_a_whole_record_of_an_emitted_type():
    built = every_decision()
    assert {type(record) for _, record in built} == set(EMITTED)
    for key, record in built:
        assert len(record) == len(record._fields), record  # built without the constructor
        assert record.envelope["command_id"] == "c1" and key in ("a", "X")


def test_a_retry_is_answered_with_the_original_terms_and_todays_balances():
    _, original = every_decision()[6]
    acct = Account("a", 77)
    _, again = decisions.duplicate(original.envelope, acct, decisions.accepted_terms(original))
    assert again._replace(cash_available=original.cash_available) == original._replace(
        duplicate=True, replaces=None
    )
    assert again.cash_available == 77
