"""The day-trading HTTP endpoints (services/gateway/http/daytrade.py) through the real app and
desk over the channel tests' stand-in log (a toy ledger) and quote server: answers in dollars,
the key's account as the userid, refusals as 409 ``code: sentence``, no quote as 503 with nothing
appended, and DUMPLOG files readable only by the account that wrote them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.gateway.config import GatewaySettings
from services.gateway.http.app import create_app
from services.gateway.http.auth import key_hash
from services.gateway.quotes import QuoteManager
from tests.unit.test_daytrade_channel import Log, QuoteServer, Tables, TestDesk

ADMIN = "admin-key"
KEYS = {"key-7": "7", "key-8": "8"}


class KeyedTables(Tables):
    async def account_for_key(self, digest: str) -> str | None:
        return next((a for k, a in KEYS.items() if key_hash(k) == digest), None)

    async def account_exists(self, account: str) -> bool:
        return True


class HttpDesk(TestDesk):
    __test__ = False

    def __init__(self, log: Log, quotes: QuoteManager, dump_dir: Path) -> None:
        super().__init__(log, quotes, dump_dir)
        self._projection = KeyedTables()
        self._directory.projection = self._projection

    async def dump_log(self, decided, filename, session=None, directory=None):
        folder = directory if directory is not None else self.dump_dir
        folder.mkdir(parents=True, exist_ok=True)
        body = f"<log user='{decided.record['user']}'/>\n".encode()
        (folder / filename).write_bytes(body)
        return filename, folder / filename, len(body)


@pytest.fixture
def app(tmp_path):
    server = QuoteServer()
    desk = HttpDesk(Log(), QuoteManager("h", 1, fetch=server), tmp_path)
    settings = GatewaySettings(admin_key=ADMIN, key_rate=1e9, key_burst=1e9)
    with TestClient(create_app(desk, settings)) as client:
        yield client, desk, server


def key(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


def test_commands_answer_in_dollars_for_the_keys_account(app):
    client, desk, _ = app
    added = client.post("/daytrade/add", json={"amount": "200.5"}, headers=key("key-7"))
    assert added.status_code == 200, added.text
    assert added.json()["cash"] == "200.50" and added.json()["command"] == "ADD"
    quoted = client.post("/daytrade/quote/S", headers=key("key-7")).json()
    assert quoted["quote"] == {
        "price": "138.41",
        "symbol": "S",
        "user": "7",
        "quote_server_time": 1_700_000_000_001,
        "cryptokey": "k" * 40,
        "hit": True,
    }
    bought = client.post(
        "/daytrade/buy", json={"symbol": "S", "amount": "300"}, headers=key("key-7")
    )
    assert bought.json()["shares"] == 2 and bought.json()["funds"] == "276.82"
    assert not bought.json()["quote"]["hit"]
    committed = client.post("/daytrade/commit-buy", headers=key("key-7")).json()
    assert (committed["symbol"], committed["shares"], committed["price"]) == ("S", 2, "138.41")
    records = [c.record for c in desk.log.appended]
    assert [r["command"] for r in records] == ["ADD", "QUOTE", "BUY", "COMMIT_BUY"]
    assert {r["user"] for r in records} == {"7"} and records[0]["amount"] == 200_500_000
    assert len({r["txn"] for r in records}) == 4  # the gateway's numbers
    summary = client.get("/daytrade/summary", headers=key("key-7"))
    assert summary.json() == {"user": "7", "cash": "200.50"}


def test_refusals_no_quote_and_bad_amounts(app):
    client, desk, server = app
    client.post("/daytrade/add", json={"amount": "1"}, headers=key("key-7"))
    refused = client.post("/daytrade/commit-buy", headers=key("key-7"))
    assert refused.status_code == 409
    assert refused.json()["error"] == "no_pending_buy: no BUY" and refused.json()["command_id"]
    before = len(desk.log.appended)
    server.fail = TimeoutError()
    unavailable = client.post("/daytrade/quote/ZZ", headers=key("key-7"))
    assert unavailable.status_code == 503
    assert unavailable.json()["error"].startswith("quote_unavailable: ")
    too_fine = client.post(
        "/daytrade/buy", json={"symbol": "S", "amount": "1.001"}, headers=key("key-7")
    )
    assert too_fine.status_code == 422
    assert "amount '1.001' has more than 2 decimal places" in too_fine.json()["error"]
    lower = client.post("/daytrade/quote/abc", headers=key("key-7"))
    assert lower.status_code == 422
    assert len(desk.log.appended) == before
    assert client.post("/daytrade/add", json={"amount": "1"}, headers=key(ADMIN)).status_code == 403


def test_dumplog_files_are_their_accounts_own(app, tmp_path):
    client, desk, _ = app
    client.post("/daytrade/add", json={"amount": "1"}, headers=key("key-7"))
    wrote = client.post("/daytrade/dumplog", json={"filename": "mine.xml"}, headers=key("key-7"))
    assert wrote.status_code == 200, wrote.text
    assert wrote.json()["url"] == "/daytrade/dumplog/mine.xml" and wrote.json()["bytes"] > 0
    got = client.get("/daytrade/dumplog/mine.xml", headers=key("key-7"))
    assert got.status_code == 200 and got.content == b"<log user='7'/>\n"
    assert got.headers["content-type"].startswith("application/xml")
    assert client.get("/daytrade/dumplog/mine.xml", headers=key("key-8")).status_code == 404
    assert (tmp_path / "accounts" / "7" / "mine.xml").is_file()
    for bad in ("." * 2 + "/x", ".hidden", "a/b", "x" * 129):
        answer = client.post("/daytrade/dumplog", json={"filename": bad}, headers=key("key-7"))
        assert answer.status_code == 422, bad
    admin = client.post("/admin/dumplog", json={"filename": "all.xml"}, headers=key(ADMIN))
    assert admin.status_code == 200 and (tmp_path / "all.xml").is_file()
    records: list[dict[str, Any]] = [c.record for c in desk.log.appended]
    assert [(r["command"], r["user"], r["filename"]) for r in records] == [
        ("ADD", "7", None),
        ("DUMPLOG", "7", "mine.xml"),
        ("DUMPLOG", "", "all.xml"),
    ]
    assert client.get("/admin/dumplog/all.xml", headers=key(ADMIN)).content == b"<log user=''/>\n"
    assert client.get("/admin/dumplog/all.xml", headers=key("key-7")).status_code == 403
