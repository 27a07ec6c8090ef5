"""The matcher's pure core: differential tests against the naive book, invariants, snapshots."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from services.matcher.state import Book, Matcher
from tests.unit.reference_book import (
    ReferenceBook,
    check_invariants,
    random_stream,
    run,
    stream_st,
    timed,
)


def assert_same_run(commands: list[tuple]) -> Book:
    """Fast and naive books agree on every event and on the book after every command."""
    fast, ref = Book("X"), ReferenceBook()
    for i, command in enumerate(commands):
        got, want = run(fast, command), run(ref, command)
        assert got == want, f"command {i} {command}"
        check_invariants(fast)
        assert fast.state() == ref.state(), f"book after command {i} {command}"
    return fast


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream_st)
def test_fast_book_equals_reference_on_random_streams(stream):
    assert_same_run(timed(stream))


@pytest.mark.parametrize("seed", range(4))
def test_fast_book_equals_reference_on_long_streams(seed):
    book = assert_same_run(random_stream(seed, 2500))
    assert book.seq > 1000  # the stream did trade, rest and cancel


def test_fast_book_equals_reference_on_a_deep_book():
    book = assert_same_run(random_stream(50, 2000, deep=True))
    assert len(book.orders) > 150 and len(book.bids) + len(book.asks) > 40


def test_dead_orders_are_compacted_and_stale_heap_keys_rebuilt(monkeypatch):
    compactions = []
    real = Book._compact
    monkeypatch.setattr(
        Book, "_compact", staticmethod(lambda lv: compactions.append(1) or real(lv))
    )
    ts, commands = 1000, [("place", 1000, 1, "a", "BUY", 500, 5)]
    for i in range(2, 200):  # a crowd behind order 1 at one price, most of it cancelled
        commands.append(("place", ts, i, "b", "BUY", 400, 5))
        if i % 4:
            commands.append(("cancel", ts, i, None))
    for i in range(200, 600):  # levels made and emptied below the top: stale heap keys
        commands.append(("place", ts, i, "c", "BUY", 100 + i % 150, 5))
        commands.append(("cancel", ts, i, None))
    commands.append(("place", ts, 600, "d", "SELL", 1, 10_000, "IOC"))  # sweep it all
    book = assert_same_run(commands)
    assert compactions
    assert len(book.bid_keys) <= 2 * len(book.bids) + 64 and not book.bids


def test_seq_is_gap_free_and_rejects_take_none():
    book = Book("X")
    seqs = []
    for command in random_stream(7, 3000):
        for event in run(book, command):
            if event[0] == "rejected":
                assert event[1] is None
            else:
                seqs.append(event[1])
    assert seqs == list(range(1, len(seqs) + 1))


def straight(commands: list[tuple]) -> Matcher:
    matcher = Matcher()
    for command in commands:
        run(matcher.book("X"), command)
    return matcher


@pytest.mark.parametrize("seed", range(3))
def test_snapshot_restore_gives_the_same_hash_and_the_same_future(seed):
    commands = random_stream(100 + seed, 3000)
    whole = straight(commands)
    half = straight(commands[:1500])
    restored = Matcher.restore(half.snapshot())
    assert restored.state_hash() == half.state_hash()
    check_invariants(restored.books["X"])
    for command in commands[1500:]:  # snapshot + replay of the rest = the straight run
        assert run(restored.book("X"), command) == run(half.book("X"), command)
    assert restored.state_hash() == whole.state_hash() == half.state_hash()


def test_state_hash_is_stable_across_processes():
    import subprocess
    import sys

    code = (
        "from tests.unit.test_matcher_state import straight;"
        "from tests.unit.reference_book import random_stream;"
        "print(straight(random_stream(5, 1500)).state_hash())"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == straight(random_stream(5, 1500)).state_hash()


def test_empty_books_do_not_change_the_hash():
    matcher = Matcher()
    before = matcher.state_hash()
    matcher.cancel("Y", 1, 99)  # a reject on a new symbol: no seq used, nothing to keep
    assert matcher.state_hash() == before
