"""The HTTP API and WebSocket streams through the whole running system: orders placed over XML
and over HTTP trade with each other and each side sees the other's fill in its own surface; keys
are refused wherever they do not belong; schemathesis (every check and phase, both keys) finds
nothing. `python -m tests.e2e.test_gateway_http` (`make fuzz-http`) runs that against `make up`."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

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


def test_an_order_can_wait_for_its_match_and_a_whole_reduce_closes(http, system):
    symbol = new_symbol(http, system)
    seller, seller_key = new_account(http, system)
    buyer, buyer_key = new_account(http, system, "1000")
    issued = http.post(
        f"/symbols/{symbol}/issue",
        json={"account_id": seller, "qty": "10"},
        headers=bearer(system.admin_key),
    )
    assert issued.status_code == 200, issued.text
    stranger = http.post(
        f"/symbols/{symbol}/issue",
        json={"account_id": "98765432109876543210", "qty": "1"},
        headers=bearer(system.admin_key),
    )
    assert stranger.status_code == 409 and "98765432109876543210" in stranger.json()["error"]
    ask = {"symbol": symbol, "side": "SELL", "qty": "4", "price": "3"}
    resting = http.post("/orders", json=ask, params={"wait": "matched"}, headers=bearer(seller_key))
    assert resting.status_code == 201, resting.text
    placed = resting.json()
    assert placed["event"] == "OrderPlaced"
    assert placed["detail"]["status"] == "open" and placed["detail"]["open_qty"] == "4"
    assert placed["detail"]["fills"] == []
    bid = {"symbol": symbol, "side": "BUY", "qty": "6", "price": "5"}
    crossing = http.post("/orders", json=bid, params={"wait": "matched"}, headers=bearer(buyer_key))
    assert crossing.status_code == 201, crossing.text
    detail = crossing.json()["detail"]
    assert detail["status"] == "open" and detail["open_qty"] == "2"
    assert detail["executed_qty"] == "4"
    assert [(f["price"], f["qty"]) for f in detail["fills"]] == [("3", "4")]
    # 4 bought at 3 (the refund of 4 x (5 - 3) is spendable at once), 2 x 5 held for the rest
    balance = http.get("/account/balance", headers=bearer(buyer_key)).json()
    assert balance == {"account_id": buyer, "cash_available": "978", "cash_held": "10"}
    refused = http.post("/orders", json=bid, params={"wait": "soon"}, headers=bearer(buyer_key))
    assert refused.status_code == 422
    order_id = crossing.json()["order_id"]
    whole = http.post(f"/orders/{order_id}/reduce", json={"qty": "2"}, headers=bearer(buyer_key))
    assert whole.status_code == 200, whole.text
    assert whole.json()["event"] == "OrderClosed"
    shown = http.get(f"/orders/{order_id}", headers=bearer(buyer_key)).json()
    assert (shown["status"], shown["open_qty"]) == ("cancelled", "0"), shown


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
        if path.startswith("/markets/") or path == "/ready":
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
# Every check, every phase (examples, coverage, fuzzing, stateful): each operation is called with
# the key its OpenAPI security names (AdminKey or AccountKey; the document says which), half the
# time on a listed symbol and an existing account so that orders trade, holds settle and the
# stateful phase follows real order ids. The one check turned off for one operation:
# use_after_free on GET /orders/{order_id} — DELETE /orders/{id} cancels an order, and a cancelled
# order stays readable with status "cancelled" by design (docs/gateway.md), where the check wants
# a 404.
# One worker: schemathesis's workers are threads, and on this machine's Python (3.11.7) threads
# that parse source at once (hypothesis describing a filter) can fail with "SystemError: AST
# constructor recursion depth mismatch" (CPython gh-106905, fixed in 3.11.8): a run error, not a
# finding. With --workers 2 the 10-example run below had 2 of them.
FUZZ_CONFIG = """
[generation]
database = "none"

[cache]
enabled = false

[auth.openapi.AdminKey]
bearer = "${MARKETLOG_FUZZ_ADMIN_KEY}"

[auth.openapi.AccountKey]
bearer = "${MARKETLOG_FUZZ_ACCOUNT_KEY}"

[dictionaries.symbols]
values = ["{symbol}"]

[dictionaries.accounts]
values = ["{account}"]

[parameters]
"path.symbol" = { dictionary = "symbols", probability = 0.5 }
"body.symbol" = { dictionary = "symbols", probability = 0.5 }
"body.account_id" = { dictionary = "accounts", probability = 0.3 }

[[operations]]
include-name = "GET /orders/{order_id}"
checks.use_after_free.enabled = false
"""


@dataclass(frozen=True)
class FuzzRun:
    returncode: int
    seconds: float
    output: str

    def numbers(self) -> str:
        """The run's own summary lines (operations, test cases, failures, time)."""
        lines = self.output.splitlines()
        start = next((i for i, line in enumerate(lines) if "SUMMARY" in line), len(lines) - 25)
        return "\n".join(lines[start:]) + f"\n(wall time {self.seconds:.0f} s)"


def fuzz_http(
    base_url: str, admin_key: str, *, examples: int, seed: int, workers: int = 1
) -> FuzzRun:
    """Schemathesis against a running gateway: opens an account (with cash and shares of a fresh
    symbol) through the API for the account key, then runs every check and phase."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        admin = bearer(admin_key)
        symbol = fresh_symbol("FZ")
        made = http.post("/symbols", json={"symbol": symbol}, headers=admin)
        assert made.status_code == 201, made.text
        opened = http.post("/accounts", json={"balance": "100000000"}, headers=admin)
        assert opened.status_code == 201, opened.text
        account, key = opened.json()["account_id"], opened.json()["api_key"]
        issued = http.post(
            f"/symbols/{symbol}/issue",
            json={"account_id": account, "qty": "1000000"},
            headers=admin,
        )
        assert issued.status_code == 200, issued.text
    with tempfile.TemporaryDirectory(prefix="fuzz-http-") as scratch:
        config = Path(scratch, "schemathesis.toml")
        config.write_text(FUZZ_CONFIG.replace("{symbol}", symbol).replace("{account}", account))
        env = {
            **os.environ,
            "MARKETLOG_FUZZ_ADMIN_KEY": admin_key,
            "MARKETLOG_FUZZ_ACCOUNT_KEY": key,
        }
        command = [
            *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color"),
            *("run", f"{base_url}/openapi.json"),
            *("--checks", "all", "--phases", "examples,coverage,fuzzing,stateful"),
            *("--max-examples", str(examples), "--workers", str(workers), "--seed", str(seed)),
            *("--request-timeout", "30", "--suppress-health-check", "all"),
        ]
        started = time.monotonic()
        run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=scratch)
        seconds = time.monotonic() - started
    return FuzzRun(run.returncode, seconds, run.stdout + run.stderr)


def test_schemathesis_finds_nothing(system):
    """All checks, all phases, both keys, 15 examples per operation (about 35 s on the 2-core
    machine; 25 until 2026-12-08, 52 s; `make fuzz-http` runs 500 against `make up`)."""
    run = fuzz_http(system.http_url, system.admin_key, examples=15, seed=568)
    assert run.returncode == 0, run.output[-12000:]
    print(run.numbers())


def main() -> None:
    """`make fuzz-http`: the same run against a running stack (`make up`), with more examples."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--admin-key-file", default=".state/admin.key")
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=secrets.randbelow(2**31))
    args = parser.parse_args()
    admin_key = os.environ.get("MARKETLOG_ADMIN_KEY") or Path(args.admin_key_file).read_text()
    print(f"schemathesis: {args.examples} examples per operation, seed {args.seed}", flush=True)
    run = fuzz_http(
        args.url, admin_key.strip(), examples=args.examples, seed=args.seed, workers=args.workers
    )
    print(run.output if run.returncode else run.numbers())
    sys.exit(run.returncode)


if __name__ == "__main__":
    main()
