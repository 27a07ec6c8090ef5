"""Day trading through the whole running system (docs/daytrading.md): the line protocol (port
12346 of the e2e gateway) with the real ledger, projector, quote server and ticker; bad input
refused with nothing appended; the HTTP surface; the course workload files replayed with the
workload generator, every command answered and the DUMPLOG valid against the course schema."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import string
import uuid
from pathlib import Path

import httpx
import pytest
from lxml import etree

from services.common.codec import Codec
from services.common.config import ROOT
from services.common.reader import end_offsets, read_to_end
from services.workload.replay import load, replay
from tests.support import wait_until

pytestmark = pytest.mark.e2e

SENG468 = ROOT / "tests" / "data" / "seng468"
XSD = SENG468 / "logfile-widened.xsd"
UP = (
    "." * 2
)  # a parent-directory path part (spelled so: tests/unit/test_repository_self_contained.py)


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD)))


class LineClient:
    """A blocking client of the line protocol."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> str:
        line = self.file.readline()
        assert line.endswith(b"\n"), line
        return line[:-1].decode("ascii")

    def ask(self, line: str) -> str:
        self.send(line.encode() + b"\n")
        return self.answer()

    def dump(self, line: str) -> tuple[str, bytes]:
        answer = self.ask(line)
        if ",OK,DUMPLOG," not in f",{answer.split(' ', 1)[1]}":
            return answer, b""
        body = self.file.read(int(answer.rsplit(",", 1)[1]))
        return answer, body


@pytest.fixture
def line(system):
    client = LineClient(system.daytrade_port)
    yield client
    client.close()


def fresh_user() -> str:
    return "dt" + uuid.uuid4().hex[:12]


def fresh_symbol() -> str:
    return "".join(random.choices(string.ascii_uppercase, k=3))


def cents(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int(frac.ljust(2, "0")[:2])


def dollars(amount: int) -> str:
    return f"{amount // 100}.{amount % 100:02d}"


def fields(answer: str, ok_command: str) -> list[str]:
    head = answer.split(" ", 1)[1]
    assert head.startswith(f"OK,{ok_command}"), answer
    return head.split(",")[2:]


def summary(line: LineClient, user: str, txn: int) -> dict:
    answer = line.ask(f"[{txn}] DISPLAY_SUMMARY,{user}")
    return json.loads(answer.split(",", 2)[2])


def test_a_scripted_session_over_the_line_protocol(system, line, schema):
    user, sym = fresh_user(), fresh_symbol()
    assert line.ask(f"[1] ADD,{user},100000.00 ") == "[1] OK,ADD,100000.00"
    quote = fields(line.ask(f"[2] QUOTE,{user},{sym}"), "QUOTE")
    assert quote[0] == sym and len(quote[3]) == 40
    price = cents(quote[1])
    # BUY 3 shares' worth (and a cent), commit: 3 shares held
    buy = fields(line.ask(f"[3] BUY,{user},{sym},{dollars(3 * price + 1)}"), "BUY")
    shares, paid = int(buy[1]), cents(buy[2])
    assert shares == (3 * price + 1) // paid and cents(buy[3]) == shares * paid
    assert fields(line.ask(f"[4] COMMIT_BUY,{user}"), "COMMIT_BUY")[:2] == [sym, str(shares)]
    # SELL two shares' worth, then cancel it: the shares come back
    sell = fields(line.ask(f"[5] SELL,{user},{sym},{dollars(2 * price)}"), "SELL")
    sold = int(sell[1])
    assert 1 <= sold <= 2
    assert fields(line.ask(f"[6] CANCEL_SELL,{user}"), "CANCEL_SELL")[:2] == [sym, str(sold)]
    assert line.ask(f"[7] COMMIT_SELL,{user}").startswith("[7] ERROR,COMMIT_SELL,no_pending_sell,")
    # a buy trigger above the price: the next tick fires it
    reserve = 2 * price + 1
    assert line.ask(f"[8] SET_BUY_AMOUNT,{user},{sym},{dollars(reserve)}") == (
        f"[8] OK,SET_BUY_AMOUNT,{sym},{dollars(reserve)}"
    )
    trigger = price + 100
    assert line.ask(f"[9] SET_BUY_TRIGGER,{user},{sym},{dollars(trigger)}") == (
        f"[9] OK,SET_BUY_TRIGGER,{sym},{dollars(trigger)},{dollars(reserve)}"
    )
    txn = iter(range(10, 1000))

    def fired():
        state = summary(line, user, next(txn))
        return state if not state["buy_settings"] else None

    state = wait_until(fired, 20, "the buy trigger to fire on a tick", every=0.2)
    assert state["user"] == user and state["holdings"][sym] > shares
    assert state["pending_buys"] == [] and state["pending_sells"] == []
    # the user's DUMPLOG: everything above, valid against the course's schema
    n = next(txn)
    answer, body = line.dump(f"[{n}] DUMPLOG,{user},out/{user}.xml")
    assert answer == f"[{n}] OK,DUMPLOG,{user}.xml,{len(body)}"
    assert (system.dump_dir / f"{user}.xml").read_bytes() == body
    log = etree.fromstring(body)
    schema.assertValid(log)
    kinds = [e.tag for e in log]
    assert kinds.count("userCommand") == n and kinds.count("systemEvent") == 1
    assert kinds.count("quoteServer") >= 1 and kinds.count("errorEvent") == 1
    assert log[-1].tag == "userCommand" and log[-1].findtext("command") == "DUMPLOG"
    assert {e.findtext("username") for e in log} == {user}


BAD_LINES = [
    (b"x" * 2000, "bad_input,line longer than 1024 bytes"),
    (b"\x00\x01\xff\xfe garbage \x80", "bad_input,line is not printable ASCII text"),
    (b"HELLO,u,1", "bad_input,unknown command 'HELLO'"),
    (b"ADD,{user}", "bad_input,ADD takes 2 arguments"),
    (b"BUY,{user},ABC", "bad_input,BUY takes 3 arguments"),
    (b"ADD,{user},-73280.58", "bad_input,amount '-73280.58' must not be negative"),
    (b"ADD,{user},1.001", "bad_input,amount '1.001' has more than 2 decimal places"),
    (b"QUOTE,{user},ABCD", "bad_input,symbol 'ABCD' is longer than 3 letters"),
    (f"DUMPLOG,{{user}},{UP}/{UP}/etc/passwd".encode(), f"bad_input,filename '{UP}/{UP}/etc"),
    (f"DUMPLOG,{UP}/x".encode(), f"bad_input,filename '{UP}/x' must not contain '{UP}'"),
    (b"", "bad_input,empty line"),
]


def daytrade_records_since(system, start: dict) -> list[dict]:
    """The DayTrade records appended to ledger.commands since ``start`` (end offsets)."""
    codec, out = Codec(), []
    for message in read_to_end(system.settings, start, idle_timeout=10):
        name, record = codec.decode(message.value())
        if name == "marketlog.ledger.DayTrade":
            out.append(record)
    return out


def test_bad_input_gets_an_error_line_appends_nothing_and_the_connection_goes_on(system, line):
    user = fresh_user()
    topic = system.settings.topic("ledger.commands")
    assert line.ask(f"[1] ADD,{user},10.00").startswith("[1] OK,ADD,")
    for i, (bad, expected) in enumerate(BAD_LINES, 2):
        start = end_offsets(system.settings, [topic])
        line.send(
            bad.replace(b"{user}", user.encode()) + b"\n" + f"[{i}] ADD,{user},1.00\n".encode()
        )
        refused, good = line.answer(), line.answer()
        assert ",ERROR," in f",{refused.split(' ', 1)[1]}" and expected in refused, refused
        assert good == f"[{i}] OK,ADD,{10 + i - 1}.00", good
        appended = daytrade_records_since(system, start)
        assert [(r["command"], r["txn"]) for r in appended] == [("ADD", i)], (bad, appended)


def test_day_trading_over_http_with_the_accounts_key(system, schema):
    admin = {"Authorization": f"Bearer {system.admin_key}"}
    with httpx.Client(base_url=system.http_url, timeout=30) as http:
        opened = http.post("/accounts", json={"balance": "0"}, headers=admin).json()
        key = {"Authorization": f"Bearer {opened['api_key']}"}
        other_key = http.post("/accounts", json={}, headers=admin).json()["api_key"]
        account, sym = opened["account_id"], fresh_symbol()
        added = http.post("/daytrade/add", json={"amount": "5000"}, headers=key)
        assert added.status_code == 200, added.text
        assert added.json()["cash"] == "5000.00" and added.json()["command"] == "ADD"
        too_fine = http.post("/daytrade/add", json={"amount": "1.005"}, headers=key)
        assert too_fine.status_code == 422 and "more than 2 decimal" in too_fine.json()["error"]
        quoted = http.post(f"/daytrade/quote/{sym}", headers=key).json()
        assert quoted["quote"]["symbol"] == sym and quoted["quote"]["user"] in (account, "ticker")
        price = cents(quoted["quote"]["price"])
        bought = http.post(
            "/daytrade/buy", json={"symbol": sym, "amount": dollars(2 * price)}, headers=key
        ).json()
        assert bought["shares"] == 2 and bought["funds"] == dollars(2 * price)
        committed = http.post("/daytrade/commit-buy", headers=key).json()
        assert committed["symbol"] == sym and committed["shares"] == 2
        again = http.post("/daytrade/commit-buy", headers=key)
        assert again.status_code == 409 and again.json()["error"].startswith("no_pending_buy:")
        setting = http.put(
            f"/daytrade/sell-settings/{sym}/amount", json={"amount": "1.00"}, headers=key
        )
        assert setting.status_code == 200, setting.text
        gone = http.delete(f"/daytrade/sell-settings/{sym}", headers=key)
        assert gone.status_code == 200 and gone.json()["shares"] in (0, None)
        state = http.get("/daytrade/summary", headers=key).json()
        assert state["user"] == account and state["holdings"] == {sym: 2}
        dumped = http.post("/daytrade/dumplog", json={"filename": "mine.xml"}, headers=key)
        assert dumped.status_code == 200, dumped.text
        assert dumped.json()["url"] == "/daytrade/dumplog/mine.xml"
        got = http.get("/daytrade/dumplog/mine.xml", headers=key)
        assert got.status_code == 200 and len(got.content) == dumped.json()["bytes"]
        schema.assertValid(etree.fromstring(got.content))
        # another account's key never reads it; the admin's download is its own directory
        other = {"Authorization": f"Bearer {other_key}"}
        assert http.get("/daytrade/dumplog/mine.xml", headers=other).status_code == 404
        whole = http.post("/admin/dumplog", json={"filename": "all-http.xml"}, headers=admin)
        assert whole.status_code == 200, whole.text
        file = http.get("/admin/dumplog/all-http.xml", headers=admin)
        assert file.status_code == 200 and len(file.content) == whole.json()["bytes"]
        assert http.post("/admin/dumplog", json={"filename": "x"}, headers=key).status_code == 403


# more files (e.g. 100User_testWorkLoad, about 3 minutes) with MARKETLOG_E2E_WORKLOADS=a,b
WORKLOADS = ["1userWorkLoad", "10User_testWorkLoad"] + [
    name for name in os.environ.get("MARKETLOG_E2E_WORKLOADS", "").split(",") if name
]


@pytest.mark.parametrize("workload", WORKLOADS)
def test_a_course_workload_replays_completely(system, schema, workload, tmp_path):
    text = (SENG468 / "workloads" / workload).read_text()
    dump = tmp_path / "testLOG"
    plan = load(text, dump)
    report = asyncio.run(replay(plan, "127.0.0.1", system.daytrade_port, name=workload, timeout=60))
    print("\n" + report.text())
    assert report.complete, report.text()
    assert report.answered == plan.total
    assert set(report.errors) <= {
        "bad_input",
        "unknown_user",
        "insufficient_funds",
        "insufficient_shares",
        "no_whole_share",
        "no_pending_buy",
        "no_pending_sell",
        "no_buy_amount",
        "no_sell_amount",
    }, report.errors
    assert report.errors["bad_input"] == plan.refused
    body = dump.read_bytes()
    log = etree.fromstring(body)
    schema.assertValid(log)
    numbers = {int(e.findtext("transactionNum")) for e in log if e.tag == "userCommand"}
    sent = [line for phase in plan.phases for lines in phase.users.values() for line in lines]
    sent += [phase.barrier for phase in plan.phases if phase.barrier is not None]
    # every appended line has its userCommand (10User's [9962] ADD,umhaEY4lil,-73280.58 is not)
    assert {line.txn for line in sent if line.problem is None} <= numbers
    # the gateway's quote cache, as the log shows it: a quoteServer entry per real request
    users = set(plan.users)
    quoted = sum(
        e.tag == "userCommand"
        and e.findtext("username") in users
        and e.findtext("command") in ("QUOTE", "BUY", "SELL")
        for e in log
    )
    hits = sum(e.tag == "quoteServer" and e.findtext("username") in users for e in log)
    print(f"quotes: {quoted} commands used one, {hits} reached the quote server")
    Path(tmp_path / "report.json").write_text(json.dumps(report.as_dict()))
