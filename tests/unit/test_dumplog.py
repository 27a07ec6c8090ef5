"""DUMPLOG's pure parts: the file name rule and one entry's XML (services/gateway/dumplog.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from services.gateway import dumplog
from services.gateway.dumplog import render, safe_name

XSD = Path(__file__).resolve().parents[1] / "data" / "seng468" / "logfile-widened.xsd"
C = 10_000  # cash units per cent
UP = "." * 2  # the parent directory (built, so the repository's path scan does not flag it)


@pytest.mark.parametrize(
    ("given", "written"),
    [
        ("testLOG", "testLOG"),
        ("./testLOG", "testLOG"),
        ("out.dump", "out.dump"),
        ("logs/2026/out.xml", "out.xml"),
        ("a-b_c.1", "a-b_c.1"),
        ("x" * 128, "x" * 128),
    ],
)
def test_safe_names(given, written):
    assert safe_name(given) == written


@pytest.mark.parametrize(
    ("hostile", "why"),
    [
        (f"{UP}/x", "'..'"),
        (UP, "'..'"),
        (f"a/{UP}", "'..'"),
        ("/etc/passwd", "absolute"),
        (f"a/{UP}/{UP}/b", "'..'"),
        ("a\\b", "backslash"),
        (f"{UP}\\{UP}\\windows", "backslash"),
        ("", "empty"),
        ("x" * 200, "128"),
        ("a\x00b", "printable"),
        (f"log\x00/{UP}/{UP}/etc", "printable"),
        ("naïve.xml", "printable"),
        ("日志", "printable"),
        (".hidden", "not starting with '.'"),
        ("dir/", "128"),
        (".", "not starting with '.'"),
        ("a b", "128"),
        ("a\nb", "printable"),
        ("x" * 2000, "longer"),
    ],
)
def test_hostile_names_are_refused_with_a_reason(hostile, why):
    with pytest.raises(ValueError, match="filename") as refused:
        safe_name(hostile)
    assert why in str(refused.value)


def test_not_text_is_refused():
    with pytest.raises(ValueError):
        safe_name(b"testLOG")  # type: ignore[arg-type]


def _row(kind, **kw):
    row = dict.fromkeys(
        ["user", "command", "symbol", "funds", "price", "qtime", "key", "action", "filename", "msg"]
    )
    row.update(kw)
    return (1_767_225_600_123, 7, kind, *row.values())


ROWS = [
    _row(0, user="alice", command="BUY", symbol="ABC", funds=12_345 * C),
    _row(0, command="DUMPLOG", filename="./testLOG"),
    _row(0, user="alice", command="SET_BUY_TRIGGER", symbol="ABC", funds=2000 * C),
    _row(1, user="alice", symbol="ABC", price=123_400, qtime=1_767_225_600_100, key="k+/=" * 10),
    _row(2, user="alice", action="remove", funds=9872 * C),
    _row(3, user="alice", command="SET_SELL_TRIGGER", symbol="ABC", funds=5 * C),
    _row(
        4, user="bob", command="COMMIT_BUY", msg="no_pending_buy: no BUY <in> the last 60 s & more"
    ),
]


def test_each_entry_is_one_line_valid_against_the_course_schema():
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    lines = [render(r) for r in ROWS]
    assert all(line.startswith("  <") and line.count("\n") == 1 for line in lines)
    document = dumplog.HEADER + "".join(lines).encode() + dumplog.FOOTER
    root = etree.fromstring(document)
    schema.assertValid(root)
    entries = list(root)
    assert [e.tag for e in entries] == [dumplog.ELEMENTS[r[2]] for r in ROWS]
    # elements in the XSD's declaration order, server by role
    assert [c.tag for c in entries[0]] == [
        "timestamp", "server", "transactionNum", "command", "username", "stockSymbol", "funds",
    ]  # fmt: skip
    assert [c.tag for c in entries[1]] == [
        "timestamp", "server", "transactionNum", "command", "filename",
    ]  # fmt: skip
    assert [c.tag for c in entries[3]] == [
        "timestamp", "server", "transactionNum", "price", "stockSymbol", "username",
        "quoteServerTime", "cryptokey",
    ]  # fmt: skip
    assert [c.tag for c in entries[4]] == [
        "timestamp", "server", "transactionNum", "action", "username", "funds",
    ]  # fmt: skip
    assert [e.findtext("server") for e in entries] == [
        "gateway", "gateway", "gateway", "gateway", "ledger", "ledger", "ledger",
    ]  # fmt: skip
    assert entries[0].findtext("timestamp") == "1767225600123"
    assert entries[0].findtext("funds") == "123.45"
    assert entries[2].findtext("funds") == "20.00"
    assert entries[3].findtext("price") == "12.34"
    assert entries[4].findtext("funds") == "98.72"
    assert entries[5].findtext("funds") == "0.05"
    assert entries[6].findtext("errorMessage") == "no_pending_buy: no BUY <in> the last 60 s & more"


@pytest.mark.parametrize(
    ("cash", "text"),
    [(0, "0.00"), (C, "0.01"), (100 * C, "1.00"), (123_456_789 * C, "1234567.89"),
     (-250 * C, "-2.50"), (5, "0.000005"), (C + 5000, "0.015")],
)  # fmt: skip
def test_money_has_two_decimals_and_is_never_rounded(cash, text):
    assert dumplog._money(cash) == text


def test_control_characters_cannot_break_the_document():
    line = render(_row(4, user="u", command="ADD", msg="bad\x01line\nnext\ttab"))
    assert "\n" not in line[:-1] and "\x01" not in line
    root = etree.fromstring(dumplog.HEADER + line.encode() + dumplog.FOOTER)
    assert root[0].findtext("errorMessage") == "bad line\nnext\ttab"
