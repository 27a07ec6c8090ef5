"""An XML ``<order>`` is answered once it has been matched and every settlement of its match is
decided, as every server of this protocol does; a read answered after that sees all of it,
whatever connection asks (issue: XML answers that reflect the match).

Each request goes on a new connection, as the protocol's clients do."""

from __future__ import annotations

import signal
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from .test_gateway_xml_conformance import entries, status
from .xml_client import XmlClient, fresh_account, fresh_symbol

pytestmark = pytest.mark.e2e


def send(system, body: str) -> ET.Element:
    with XmlClient(system.xml_port) as client:
        return client.send(body.encode())


def order(system, account: str, sym: str, amount: int, limit: int) -> ET.Element:
    (answer,) = send(
        system,
        f'<transactions id="{account}">'
        f'<order sym="{sym}" amount="{amount}" limit="{limit}"/></transactions>',
    )
    return answer


def query(system, account: str, order_id: int) -> list[tuple]:
    with XmlClient(system.xml_port) as client:
        return entries(status(client, account, order_id))


def market(system, seller_shares: int, buyer_balance: int) -> tuple[str, str, str]:
    """A fresh symbol, a seller holding shares of it and a buyer with cash."""
    sym, seller, buyer = fresh_symbol("A"), fresh_account(), fresh_account()
    results = send(
        system,
        f'<create><account id="{seller}" balance="0"/>'
        f'<account id="{buyer}" balance="{buyer_balance}"/>'
        f'<symbol sym="{sym}"><account id="{seller}">{seller_shares}</account></symbol></create>',
    )
    assert [r.tag for r in results] == ["created"] * 3, ET.tostring(results)
    return sym, seller, buyer


def test_a_query_right_after_a_crossing_order_shows_its_executions_and_the_rest(system):
    sym, seller, buyer = market(system, 100, 10_000)
    sell = int(order(system, seller, sym, -100, 10).get("id"))
    buy = order(system, buyer, sym, 150, 12)
    assert buy.tag == "opened"
    # the buyer's own order: executed at the resting price, the rest open
    assert sorted(query(system, buyer, int(buy.get("id")))) == [
        ("executed", "100", "10"),
        ("open", "50"),
    ]
    # the counterparty, asking on its own connection, sees the proceeds of the same match
    assert query(system, seller, sell) == [("executed", "100", "10")]


def test_a_buyer_that_executed_below_its_limit_spends_the_refund_in_its_next_request(system):
    # exactly enough for 60 @ 12: executing at 10 gives back 60 x 2 = 120
    sym, seller, buyer = market(system, 100, 720)
    order(system, seller, sym, -60, 10)
    assert order(system, buyer, sym, 60, 12).tag == "opened"
    again = order(system, buyer, sym, 10, 12)  # needs 120: only the refund pays for it
    assert again.tag == "opened", ET.tostring(again)
    # and the seller's proceeds (60 x 10) are spendable at once too
    sym2 = fresh_symbol("B")
    send(
        system, f'<create><symbol sym="{sym2}"><account id="{buyer}">5</account></symbol></create>'
    )
    order(system, buyer, sym2, -5, 100)
    assert order(system, seller, sym2, 5, 120).tag == "opened"


def test_the_answer_waits_for_the_match_and_not_only_for_the_hold(system):
    """Deterministic: with the matcher paused the order is held (accepted) but not matched, so
    no answer may come; once the matcher runs, the answer and the executions come together."""
    sym, seller, buyer = market(system, 100, 10_000)
    order(system, seller, sym, -100, 10)
    answers: list[ET.Element] = []
    system.procs.signal("matcher", signal.SIGSTOP)
    try:
        sender = threading.Thread(target=lambda: answers.append(order(system, buyer, sym, 40, 11)))
        sender.start()
        time.sleep(1.0)  # far beyond an acceptance's latency: the ledger answers in ms
        assert answers == [], "answered before the order was matched"
    finally:
        system.procs.signal("matcher", signal.SIGCONT)
    sender.join(20)
    (opened,) = answers
    assert opened.tag == "opened"
    assert query(system, buyer, int(opened.get("id"))) == [("executed", "40", "10")]


def test_a_cancel_on_a_new_connection_right_after_a_fill_reports_the_fill(system):
    sym, seller, buyer = market(system, 100, 10_000)
    sell = int(order(system, seller, sym, -100, 10).get("id"))
    order(system, buyer, sym, 30, 10)
    (canceled,) = send(system, f'<transactions id="{seller}"><cancel id="{sell}"/></transactions>')
    assert canceled.tag == "canceled"
    assert entries(canceled) == [("canceled", "70"), ("executed", "30", "10")]
