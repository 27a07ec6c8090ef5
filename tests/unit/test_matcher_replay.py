"""`python -m services.matcher replay`: JSON lines in, the pure core's events out."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from services.matcher.replay import replay

WORKED = [
    {"op": "place", "id": 1, "account": "a1", "symbol": "X", "side": "buy", "price": "125",
     "qty": "300", "ts": 1},
    {"op": "place", "id": 2, "account": "a2", "symbol": "X", "side": "sell", "price": "130",
     "qty": "100", "ts": 2},
    {"op": "place", "id": 3, "account": "a3", "symbol": "X", "side": "buy", "price": "127",
     "qty": "200", "ts": 3},
    {"op": "place", "id": 4, "account": "a4", "symbol": "X", "side": "sell", "price": "128",
     "qty": "500", "ts": 4},
    {"op": "place", "id": 5, "account": "a5", "symbol": "X", "side": "sell", "price": "140",
     "qty": "200", "ts": 5},
    {"op": "place", "id": 6, "account": "a6", "symbol": "X", "side": "buy", "price": "125",
     "qty": "400", "ts": 6},
    {"op": "place", "id": 7, "account": "a7", "symbol": "X", "side": "sell", "price": "124.50",
     "qty": "400", "tif": "GTC", "ts": 1700000000000000},
]  # fmt: skip


def run(lines: list[str]) -> tuple[list[dict], str, int]:
    out, err = io.StringIO(), io.StringIO()
    bad = replay(lines, out, err)
    return [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue(), bad


def test_worked_example_trades():
    events, err, bad = run([json.dumps(c) for c in WORKED])
    assert (err, bad) == ("", 0)
    assert [e["event"] for e in events] == ["rested"] * 6 + ["trade", "trade"]
    assert events[6] == {
        "event": "trade", "symbol": "X", "seq": 7, "ts": 1700000000000000, "price": "127.00",
        "qty": "200", "maker": 3, "taker": 7, "maker_account": "a3", "taker_account": "a7",
        "taker_side": "sell", "maker_remaining": "0", "taker_remaining": "200",
    }  # fmt: skip
    assert (events[7]["price"], events[7]["maker"], events[7]["maker_remaining"]) == (
        "125.00",
        1,
        "100",
    )
    assert events[0]["price"] == "125.00" and events[0]["qty"] == "300"


def test_bad_lines_are_reported_with_their_number_and_skipped():
    lines = [
        json.dumps(WORKED[0]),
        "{not json",
        json.dumps({**WORKED[1], "price": "130.12345"}),
        json.dumps({**WORKED[1], "side": "sideways"}),
        json.dumps({"op": "fly", "id": 1, "symbol": "X"}),
        json.dumps({**WORKED[1], "qty": 1.5}),
        "",
        "# a comment",
        json.dumps({"op": "cancel", "id": 1, "symbol": "X", "ts": 9}),
    ]
    events, err, bad = run(lines)
    assert bad == 5
    assert [line.split(":")[0] for line in err.splitlines()] == [
        "line 2", "line 3", "line 4", "line 5", "line 6"]  # fmt: skip
    assert "4 decimal places" in err and "sideways" not in err
    assert [e["event"] for e in events] == ["rested", "cancelled"]
    assert events[1] == {"event": "cancelled", "symbol": "X", "seq": 2, "ts": 9, "id": 1,
                         "account": "a1", "side": "buy", "price": "125.00", "qty": "300",
                         "reason": "USER", "rested": True}  # fmt: skip


def test_every_op_and_option():
    lines = [
        {"op": "place", "id": 1, "account": "m", "symbol": "Y", "side": "SELL", "price": "10",
         "qty": "5", "tif": "gtd", "expire_ts": 100, "ts": 1},
        {"op": "place", "id": 2, "account": "m", "symbol": "Y", "side": "sell", "price": "12",
         "qty": "100", "post_only": True, "ts": 2},
        {"op": "reduce", "id": 2, "symbol": "Y", "qty": "40", "ts": 3},
        {"op": "replace", "id": 2, "new_id": 3, "symbol": "Y", "price": "12.5", "qty": "60",
         "ts": 4},
        {"op": "place", "id": 4, "account": "b", "symbol": "Y", "side": "buy", "qty": "1000",
         "budget": "800.000001", "lot": "1", "ts": 5},
        {"op": "place", "id": 5, "account": "m", "symbol": "Y", "side": "buy", "price": "13",
         "qty": "0.5", "stp": "co", "tif": "FOK", "ts": 6},
        {"op": "replace", "id": 99, "new_id": 6, "symbol": "Y", "price": "1", "qty": "1", "ts": 7},
    ]  # fmt: skip
    events, err, bad = run([json.dumps(c) for c in lines])
    assert (err, bad) == ("", 0)
    kinds = [(e["event"], e.get("reason")) for e in events]
    assert kinds == [
        ("rested", None), ("rested", None), ("reduced", None), ("cancelled", "REPLACED"),
        ("rested", None), ("trade", None), ("trade", None), ("cancelled", "IOC_REMAINDER"),
        ("cancelled", "FOK_UNFILLABLE"), ("rejected", "unknown order"),
    ]  # fmt: skip
    # budget 800.000001: 5 at 10 = 50, then 750.000001 // 12.5 = 60 whole shares
    assert [(e["price"], e["qty"]) for e in events if e["event"] == "trade"] == [
        ("10.00", "5"), ("12.50", "60")]  # fmt: skip
    assert events[7]["price"] is None and events[7]["qty"] == "935"
    assert events[-1]["new_id"] == 6


def test_cli_reads_stdin_and_exits_1_on_bad_lines():
    text = json.dumps(WORKED[0]) + "\nnope\n"
    done = subprocess.run(
        [sys.executable, "-m", "services.matcher", "replay"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert json.loads(done.stdout)["event"] == "rested"
    assert done.stderr.startswith("line 2: not JSON")
