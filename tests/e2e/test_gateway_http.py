"""The HTTP API and WebSocket streams through the whole running system: orders placed over XML
and over HTTP trade with each other and each side sees the other's fill in its own surface; keys
are refused wherever they do not belong; schemathesis finds no server error."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import uuid

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from .xml_client import XmlClient, fresh_account, fresh_symbol, wait_for

pytestmark = pytest.mark.e2e


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def http(system):
    with httpx.Client(base_url=system.http_url, timeout=30) as client:
        yield client


def new_account(http, system, balance: str = "10000") -> tuple[str, str]:
    made = http.post("/accounts", json={"balance": balance}, headers=bearer(system.admin_key))
    assert made.status_code == 201, made.text
    return made.json()["account_id"], made.json()["api_key"]


def new_symbol(http, system) -> str:
    symbol = fresh_symbol("H")
    made = http.post("/symbols", json={"symbol": symbol}, headers=bearer(system.admin_key))
    assert made.status_code == 201 and made.json()["created"], made.text
    return symbol


def ws_url(system, path: str) -> str:
    return system.http_url.replace("http://", "ws://") + path


def messages(ws, until, limit: int = 50) -> list[dict]:
    got = []
    for _ in range(limit):
        got.append(json.loads(ws.recv(timeout=20)))
        if until(got[-1]):
            return got
    raise AssertionError(f"never saw it: {got}")


def test_xml_and_http_orders_trade_and_each_side_sees_the_fill(http, system):
    symbol = new_symbol(http, system)
    _, key = new_account(http, system)
    seller = fresh_account()
    with XmlClient(system.xml_port) as xml:
        created = xml.send(
            f'<create><account id="{seller}" balance="0"/><symbol sym="{symbol}">'
            f'<account id="{seller}">100</account></symbol></create>'.encode()
        )
        assert [c.tag for c in created] == ["created", "created"]
        with (
            ws_connect(ws_url(system, "/ws/orders"), additional_headers=bearer(key)) as private,
            ws_connect(ws_url(system, f"/ws/market/{symbol}")) as public,
        ):
            snapshot = json.loads(public.recv(timeout=20))
            assert snapshot["type"] == "snapshot" and snapshot["bids"] == snapshot["asks"] == []
            (opened,) = xml.send(
                f'<transactions id="{seller}"><order sym="{symbol}" amount="-10" limit="5"/>'
                f"</transactions>".encode()
            )
            assert opened.tag == "opened"
            sold = int(opened.get("id"))
            placed = http.post(
                "/orders",
                json={
                    "symbol": symbol,
                    "side": "BUY",
                    "qty": "10",
                    "price": "6",
                    "client_order_id": "c-" + uuid.uuid4().hex,
                },
                headers=bearer(key),
            )
            assert placed.status_code == 201, placed.text
            assert placed.json()["event"] == "OrderAccepted"
            bought = placed.json()["order_id"]
            seen = messages(private, lambda m: m["type"] == "filled")
            assert seen[0]["type"] == "accepted" and seen[0]["order_id"] == bought
            assert (seen[-1]["price"], seen[-1]["qty"], seen[-1]["remaining"]) == ("5", "10", "0")
            tape = messages(public, lambda m: m["type"] == "trade")
            assert tape[-1]["price"] == "5" and tape[-1]["qty"] == "10"
            assert [m["seq"] for m in tape] == sorted(m["seq"] for m in tape)
            assert tape[0]["seq"] > snapshot["seq"]
        # the XML side sees its execution at the resting order's price
        query = f'<transactions id="{seller}"><query id="{sold}"/></transactions>'.encode()
        status = wait_for(lambda: (s := xml.send(query)[0]).find("executed") is not None and s)
        executed = status.find("executed")
        assert (executed.get("shares"), executed.get("price")) == ("10", "5")
        assert status.find("open") is None
    # and the HTTP side in its own reads
    order = http.get(f"/orders/{bought}", headers=bearer(key)).json()
    assert order["status"] == "executed" and order["executions"][0]["price"] == "5"
    fills = http.get("/executions", headers=bearer(key)).json()
    assert [(f["order_id"], f["qty"]) for f in fills] == [(bought, "10")]
    assert http.get("/account/balance", headers=bearer(key)).json()["cash_available"] == "9950"
    positions = http.get("/account/positions", headers=bearer(key)).json()
    assert {"symbol": symbol, "available": "10", "held": "0"} in positions
    trades = http.get(f"/markets/{symbol}/trades").json()
    assert trades[0]["price"] == "5" and trades[0]["taker_side"] == "BUY"
    book = http.get(f"/markets/{symbol}/book").json()
    assert book["bids"] == book["asks"] == [] and book["seq"] >= trades[0]["seq"]


def test_a_read_after_a_pushed_fill_waits_for_the_fill(http, system):
    """The fill another account's order caused is not the buyer's write, yet once /ws/orders has
    pushed it, the buyer's HTTP reads show it: with the projector paused, such a read waits."""
    symbol = new_symbol(http, system)
    _, key = new_account(http, system)
    seller = fresh_account()
    placed = http.post(
        "/orders",
        json={"symbol": symbol, "side": "BUY", "qty": "10", "price": "6", "client_order_id": "b"},
        headers=bearer(key),
    ).json()
    bought = placed["order_id"]
    assert http.get(f"/orders/{bought}", headers=bearer(key)).json()["status"] == "open"
    with (
        XmlClient(system.xml_port) as xml,
        ws_connect(ws_url(system, "/ws/orders"), additional_headers=bearer(key)) as private,
    ):
        xml.send(
            f'<create><account id="{seller}" balance="0"/><symbol sym="{symbol}">'
            f'<account id="{seller}">100</account></symbol></create>'.encode()
        )
        system.procs.signal("projector", signal.SIGSTOP)
        resume = threading.Timer(1.0, system.procs.signal, ("projector", signal.SIGCONT))
        try:
            (opened,) = xml.send(
                f'<transactions id="{seller}"><order sym="{symbol}" amount="-10" limit="5"/>'
                f"</transactions>".encode()
            )
            assert opened.tag == "opened"
            messages(private, lambda m: m["type"] == "filled" and m["order_id"] == bought)
            resume.start()
            order = http.get(f"/orders/{bought}", headers=bearer(key)).json()
        finally:
            resume.cancel()
            system.procs.signal("projector", signal.SIGCONT)
    assert order["status"] == "executed" and order["executions"][0]["price"] == "6"


def test_orders_lifecycle_over_http(http, system):
    symbol = new_symbol(http, system)
    account, key = new_account(http, system)
    order = {"symbol": symbol, "side": "BUY", "qty": "10", "price": "2", "client_order_id": "a1"}
    first = http.post("/orders", json=order, headers=bearer(key)).json()
    retry = http.post("/orders", json=order, headers=bearer(key)).json()
    assert retry["order_id"] == first["order_id"] and retry["duplicate"]
    order_id = first["order_id"]
    listed = http.get("/orders", params={"status": "open"}, headers=bearer(key)).json()
    assert [o["order_id"] for o in listed] == [order_id]
    reduced = http.post(f"/orders/{order_id}/reduce", json={"qty": "4"}, headers=bearer(key))
    assert reduced.status_code == 200, reduced.text
    assert http.get(f"/orders/{order_id}", headers=bearer(key)).json()["open_qty"] == "6"
    replaced = http.post(
        f"/orders/{order_id}/replace", json={"price": "1.5", "qty": "8"}, headers=bearer(key)
    )
    assert replaced.status_code == 200, replaced.text
    new_id = replaced.json()["order_id"]
    assert new_id != order_id
    cancelled = http.delete(f"/orders/{new_id}", headers=bearer(key))
    assert cancelled.status_code == 200 and cancelled.json()["event"] == "OrderClosed"
    again = http.delete(f"/orders/{new_id}", headers=bearer(key))
    assert again.status_code == 409
    balance = http.get("/account/balance", headers=bearer(key)).json()
    assert balance == {"account_id": account, "cash_available": "10000", "cash_held": "0"}
    poor = http.post(
        "/orders", json={**order, "client_order_id": "a2", "qty": "100000"}, headers=bearer(key)
    )
    assert poor.status_code == 409 and poor.json()["error"]
    unknown = http.post(
        "/orders",
        json={**order, "symbol": "NOPE" + symbol, "client_order_id": "a3"},
        headers=bearer(key),
    )
    assert unknown.status_code == 404


# -- auth ----------------------------------------------------------------------------------------
def test_every_endpoint_refuses_missing_wrong_and_other_keys(http, system):
    symbol = new_symbol(http, system)
    owner, owner_key = new_account(http, system)
    _, other_key = new_account(http, system)
    order = http.post(
        "/orders",
        json={"symbol": symbol, "side": "BUY", "qty": "1", "price": "1"},
        headers=bearer(owner_key),
    ).json()["order_id"]
    spec = http.get("/openapi.json").json()
    bodies = {
        "/accounts": {},
        "/symbols": {"symbol": fresh_symbol()},
        "/symbols/{symbol}/issue": {"account_id": owner, "qty": "1"},
        "/account/deposit": {"amount": "1"},
        "/account/withdraw": {"amount": "1"},
        "/orders": {"symbol": symbol, "side": "BUY", "qty": "1", "price": "1"},
        "/orders/{order_id}/reduce": {"qty": "1"},
        "/orders/{order_id}/replace": {"price": "1", "qty": "1"},
    }
    checked = 0
    for path, methods in spec["paths"].items():
        if path.startswith("/markets/"):
            continue  # public market data
        url = path.replace("{order_id}", str(order)).replace("{symbol}", symbol)
        for method, op in methods.items():
            admin_only = "admin" in op.get("tags", [])
            body = bodies.get(path)
            for headers, expected in [
                ({}, 401),
                (bearer("wrong"), 401),
                ({"Authorization": "Basic eDp5"}, 401),
                (bearer(other_key if not admin_only else owner_key), 403 if admin_only else None),
            ]:
                answer = http.request(method, url, json=body, headers=headers)
                if expected is None:  # another account's key: never the owner's order
                    if "{order_id}" in path:
                        assert answer.status_code == 404, (method, path, answer.text)
                    continue
                assert answer.status_code == expected, (method, path, headers, answer.text)
                assert answer.json()["error"]
                checked += 1
    assert checked >= 3 * 12
    # the other key placed orders of its own above, but never sees the owner's
    theirs = http.get("/orders", headers=bearer(other_key)).json()
    assert order not in [o["order_id"] for o in theirs]
    assert http.get(f"/orders/{order}", headers=bearer(owner_key)).status_code == 200


def test_streams_refuse_missing_and_wrong_keys_and_keep_accounts_apart(http, system):
    for headers in [{}, bearer("wrong"), {"Authorization": f"Bearer {system.admin_key}"}]:
        with (
            pytest.raises(InvalidStatus),
            ws_connect(ws_url(system, "/ws/orders"), additional_headers=headers),
        ):
            pass
    with pytest.raises(InvalidStatus), ws_connect(ws_url(system, "/ws/market/NOSUCHSYMBOL1")):
        pass
    symbol = new_symbol(http, system)
    _, mine = new_account(http, system)
    _, theirs = new_account(http, system)
    with ws_connect(ws_url(system, "/ws/orders"), additional_headers=bearer(mine)) as stream:
        for key in (theirs, mine):
            placed = http.post(
                "/orders",
                json={"symbol": symbol, "side": "BUY", "qty": "1", "price": "1"},
                headers=bearer(key),
            )
            assert placed.status_code == 201
        first = json.loads(stream.recv(timeout=20))
        assert first["order_id"] == placed.json()["order_id"]  # not the other account's order


# -- schemathesis --------------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["account", "admin"])
def test_schemathesis_finds_no_server_error(http, system, who):
    key = new_account(http, system)[1] if who == "account" else system.admin_key
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{system.http_url}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance",
            "-H",
            f"Authorization: Bearer {key}",
            "--max-examples",
            "15",
            "--request-timeout",
            "30",
            "--generation-deterministic",
            "--suppress-health-check",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
