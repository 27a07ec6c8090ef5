"""services/common/workload.py: the day-trading line format (docs/daytrading.md, *Commands*)."""

from __future__ import annotations

import pytest

from services.common.config import ROOT
from services.common.workload import (
    ARGS,
    Command,
    WorkloadError,
    format_cents,
    parse_amount,
    parse_line,
    parse_lines,
)

# a parent-directory segment, as input that must be refused (spelled out so that
# test_repository_self_contained, which flags every literal one, does not take it for a path)
UP = "." * 2
WORKLOADS = ROOT / "tests" / "data" / "seng468" / "workloads"


def test_a_course_line():
    assert parse_line("[1] ADD,oY01WerH6z,8547.12 \n") == Command(
        "ADD", "oY01WerH6z", amount=854_712, txn=1
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("QUOTE,u,S", Command("QUOTE", "u", "S")),
        ("[2] BUY,u,ABC,276.83", Command("BUY", "u", "ABC", 27_683, txn=2)),
        ("COMMIT_BUY,u", Command("COMMIT_BUY", "u")),
        ("CANCEL_BUY,u", Command("CANCEL_BUY", "u")),
        ("SELL,u,ABC,1", Command("SELL", "u", "ABC", 100)),
        ("COMMIT_SELL,u", Command("COMMIT_SELL", "u")),
        ("CANCEL_SELL,u", Command("CANCEL_SELL", "u")),
        ("SET_BUY_AMOUNT,u,ABC,50.5", Command("SET_BUY_AMOUNT", "u", "ABC", 5050)),
        ("CANCEL_SET_BUY,u,ABC", Command("CANCEL_SET_BUY", "u", "ABC")),
        ("SET_BUY_TRIGGER,u,ABC,20.00", Command("SET_BUY_TRIGGER", "u", "ABC", 2000)),
        ("SET_SELL_AMOUNT,u,ABC,550.50", Command("SET_SELL_AMOUNT", "u", "ABC", 55_050)),
        ("SET_SELL_TRIGGER,u,ABC,0.01", Command("SET_SELL_TRIGGER", "u", "ABC", 1)),
        ("CANCEL_SET_SELL,u,ABC", Command("CANCEL_SET_SELL", "u", "ABC")),
        ("DISPLAY_SUMMARY,u", Command("DISPLAY_SUMMARY", "u")),
        ("DUMPLOG,u,out.dump", Command("DUMPLOG", "u", filename="out.dump")),
        ("[100] DUMPLOG,./testLOG", Command("DUMPLOG", None, filename="./testLOG", txn=100)),
        ("  [ 7 ]   QUOTE , u , S \r\n", Command("QUOTE", "u", "S", txn=7)),
        ("[7]QUOTE,u,S", Command("QUOTE", "u", "S", txn=7)),
        ("ADD,u,9999999999.99", Command("ADD", "u", amount=999_999_999_999)),
        ("ADD,u,12.500", Command("ADD", "u", amount=1250)),
        ("ADD,u,007.10", Command("ADD", "u", amount=710)),
    ],
)
def test_every_command_parses(line, expected):
    assert parse_line(line) == expected


def test_every_command_is_covered():
    assert len(ARGS) == 16


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ADD,u,-73280.58", "amount '-73280.58' must not be negative"),
        ("ADD,u,1.234", "amount '1.234' has more than 2 decimal places"),
        ("ADD,u,0.00", "amount must be greater than zero"),
        ("ADD,u,10000000000.00", "too large"),
        ("ADD,u,1e3", "is not a decimal number"),
        ("ADD,u,+1", "is not a decimal number"),
        ("ADD,u,.5", "is not a decimal number"),
        ("ADD,u,nan", "is not a decimal number"),
        ("SET_BUY_TRIGGER,u,ABC,1.001", "trigger price '1.001' has more than 2 decimal places"),
        ("QUOTE,u,ABCD", "symbol 'ABCD' is longer than 3 letters"),
        ("QUOTE,u,abc", "symbol 'abc' must be 1 to 3 capital letters"),
        ("QUOTE,u,A1", "symbol 'A1' must be 1 to 3 capital letters"),
        ("QUOTE,u,", "symbol '' must be"),
        ("QUOTE,,S", "userid must not be empty"),
        ("QUOTE,a b,S", "userid 'a b' must be 1 to 32"),
        ("QUOTE," + "u" * 33 + ",S", "must be 1 to 32"),
        ("HELLO,u", "unknown command 'HELLO'"),
        ("add,u,1.00", "command 'add' must be written in capitals"),
        ("ADD,u", "ADD takes 2 arguments (ADD,userid,amount), got 1"),
        ("COMMIT_BUY,u,x", "COMMIT_BUY takes 1 argument (COMMIT_BUY,userid), got 2"),
        ("COMMIT_BUY", "got 0"),
        ("DUMPLOG", "DUMPLOG,userid,filename or DUMPLOG,filename"),
        ("DUMPLOG,../x", "must not contain '..'"),
        (f"DUMPLOG,u,a/{UP}/{UP}/x", "must not contain '..'"),
        (f"DUMPLOG,u,x/{UP}", "must not contain '..'"),
        ("DUMPLOG,/etc/passwd", "must not be an absolute path"),
        ("DUMPLOG,a\\b", "must not contain a backslash"),
        ("DUMPLOG,.bashrc", "must end in a name"),
        ("DUMPLOG,./", "must end in a name"),
        ("DUMPLOG," + "f" * 129, "must end in a name of 1 to 128"),
        ("[0] ADD,u,1.00", "transaction number '0' must be a positive integer"),
        ("[x] ADD,u,1.00", "transaction number 'x' must be"),
        ("[9223372036854775808] ADD,u,1", "must be a positive integer"),
        ("[1 ADD,u,1.00", "not closed"),
        ("[1]", "missing command"),
        ("", "empty line"),
        ("QUOTE,u,S\x00", "not printable ASCII"),
        ("QUOTE,u,S\x1b[2J", "not printable ASCII"),
        ("QUOTE,jöhn,S", "not printable ASCII"),
        ("QUOTE,u,S," + "x" * 1100, "longer than 1024"),
    ],
)
def test_bad_lines_are_refused_with_a_clear_message(line, message):
    with pytest.raises(WorkloadError) as caught:
        parse_line(line)
    assert message in str(caught.value)


def test_a_refusal_says_what_could_be_read():
    with pytest.raises(WorkloadError) as caught:
        parse_line("[9962] ADD,umhaEY4lil,-73280.58 ")
    assert (caught.value.txn, caught.value.command, caught.value.user) == (
        9962,
        "ADD",
        "umhaEY4lil",
    )
    with pytest.raises(WorkloadError) as caught:
        parse_line("[5] HELLO,alice,1")
    assert (caught.value.txn, caught.value.command, caught.value.user) == (5, None, "alice")


def test_amounts_are_exact_cents_without_floats():
    assert parse_amount("0.1") + parse_amount("0.2") == parse_amount("0.3") == 30
    assert parse_amount("123456789.99") == 12_345_678_999
    assert format_cents(12_345_678_999) == "123456789.99"
    assert format_cents(5) == "0.05"


def test_the_canonical_line():
    command = parse_line("[3]  BUY , u ,ABC, 12.5 ")
    assert command.line() == "[3] BUY,u,ABC,12.50"
    assert parse_line(command.line()) == command
    admin = parse_line("DUMPLOG,./testLOG")
    assert (admin.admin, admin.dump_name, admin.line()) == (True, "testLOG", "DUMPLOG,./testLOG")
    assert parse_line("DUMPLOG,u,dir/x.xml").dump_name == "x.xml"


def test_every_vendored_line_parses_but_the_negative_add():
    for path in sorted(WORKLOADS.iterdir()):
        lines = path.read_text().splitlines()
        parsed = parse_lines(path.read_text())
        assert len(parsed) == len(lines)
        refused = [(p.txn, str(p)) for p in parsed if isinstance(p, WorkloadError)]
        if path.name == "10User_testWorkLoad":
            assert refused == [(9962, "amount '-73280.58' must not be negative")]
        else:
            assert refused == []
        commands = [p for p in parsed if isinstance(p, Command)]
        assert [c.txn for c in commands] == [
            n for n in range(1, len(lines) + 1) if not (path.name.startswith("10U") and n == 9962)
        ]
        assert commands[-1].admin and commands[-1].dump_name == "testLOG"
        assert sum(c.admin for c in commands) == 1
