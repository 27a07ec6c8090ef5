"""The quote server's pure core: prices, cryptokeys, request and reply lines, line framing."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.quotes import core

SEED = "test-seed"
buckets = st.integers(min_value=-(10**15), max_value=10**15)
symbols = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), min_size=1, max_size=3)


def _naive_walk(seed: str, symbol: str, bucket: int) -> int:
    return sum(core.step_bp(seed, symbol, k) for k in range(bucket - core.WINDOW + 1, bucket + 1))


# ---- prices -------------------------------------------------------------------------------


@given(symbols, buckets)
def test_price_is_deterministic_and_positive(symbol, bucket):
    price = core.price_cents(SEED, symbol, bucket)
    assert price == core.price_cents(SEED, symbol, bucket) > 0
    assert price == core.price_cents(SEED, symbol.lower(), bucket)


@given(symbols, buckets)
def test_walk_stays_in_its_window(symbol, bucket):
    walk = core.walk_bp(SEED, symbol, bucket)
    assert walk == _naive_walk(SEED, symbol, bucket)
    assert abs(walk) <= core.WINDOW * core.STEP_BP
    base = core.base_cents(SEED, symbol)
    assert core.MIN_BASE_CENTS <= base <= core.MAX_BASE_CENTS
    low = base * (10_000 - core.WINDOW * core.STEP_BP) // 10_000
    assert low > 0
    assert low <= core.price_cents(SEED, symbol, bucket) <= 2 * base


def test_steps_are_bounded_and_centred():
    steps = [core.step_bp(SEED, "ABC", k) for k in range(-5000, 5000)]
    assert min(steps) == -core.STEP_BP and max(steps) == core.STEP_BP
    assert abs(sum(steps) / len(steps)) < 1.5


def test_any_bucket_is_computed_alone_and_fast():
    """No bucket depends on having computed the ones before it, and a far one is as cheap."""
    far = [10**12 + i for i in (0, 1, 2, 999)]
    forward = [core.price_cents(SEED, "XYZ", b) for b in far]
    core._block.cache_clear()
    backward = [core.price_cents(SEED, "XYZ", b) for b in reversed(far)]
    assert forward == backward[::-1]
    core._block.cache_clear()
    start = time.perf_counter()
    for b in range(10**15, 10**15 + 50 * 10**6, 10**6):
        core.price_cents(SEED, "XYZ", b)
    assert time.perf_counter() - start < 1.0


def test_price_moves_a_little_each_bucket():
    prices = [core.price_cents(SEED, "ABC", b) for b in range(10_000)]
    assert len(set(prices)) > 1_000  # it walks
    for before, after in itertools.pairwise(prices):
        # one step in, one out: at most 2 * STEP_BP of the base, plus rounding
        assert abs(after - before) <= core.base_cents(SEED, "ABC") * 2 * core.STEP_BP // 10_000 + 1


def test_symbols_and_seeds_have_their_own_walks():
    one = [core.price_cents(SEED, "ABC", b) for b in range(100)]
    assert one != [core.price_cents(SEED, "ABD", b) for b in range(100)]
    assert one != [core.price_cents("other", "ABC", b) for b in range(100)]


def test_price_text_has_two_decimals():
    assert core.cents_text(5817) == "58.17"
    assert core.cents_text(5800) == "58.00"
    assert core.cents_text(7) == "0.07"
    quote = core.Quote(5817, "APP", "robodwye", 1330546050315, "ZcwK==")
    assert quote.line() == b"58.17,APP,robodwye,1330546050315,ZcwK==\n"


# ---- cryptokeys -----------------------------------------------------------------------------


def test_cryptokeys_are_unique_and_verifiable():
    secret = core.key_secret(SEED)
    request = core.Request("ABC", "jsmith")
    keys = set()
    for counter in range(20_000):  # same user, symbol and millisecond: only the nonce differs
        quote = core.make_quote(
            SEED, request, 1_700_000_000_000, 1000, core.nonce(b"boot", counter)
        )
        assert "," not in quote.cryptokey and "\n" not in quote.cryptokey
        keys.add(quote.cryptokey)
    assert len(keys) == 20_000
    assert core.verify(secret, quote)
    other_run = core.make_quote(SEED, request, 1_700_000_000_000, 1000, core.nonce(b"toob", 0))
    assert other_run.cryptokey not in keys


def test_cryptokey_is_bound_to_what_the_quote_says():
    secret = core.key_secret(SEED)
    quote = core.make_quote(
        SEED, core.Request("ABC", "jsmith"), 1_700_000_000_000, 1000, core.nonce(b"boot", 7)
    )
    assert core.verify(secret, quote)
    for forged in (
        core.Quote(
            quote.price_cents + 1, quote.symbol, quote.user, quote.timestamp_ms, quote.cryptokey
        ),
        core.Quote(quote.price_cents, "ABD", quote.user, quote.timestamp_ms, quote.cryptokey),
        core.Quote(quote.price_cents, quote.symbol, "jsmitH", quote.timestamp_ms, quote.cryptokey),
        core.Quote(
            quote.price_cents, quote.symbol, quote.user, quote.timestamp_ms + 1, quote.cryptokey
        ),
        core.Quote(quote.price_cents, quote.symbol, quote.user, quote.timestamp_ms, "not base64!"),
        core.Quote(quote.price_cents, quote.symbol, quote.user, quote.timestamp_ms, "QUJD"),
    ):
        assert not core.verify(secret, forged)
    assert not core.verify(core.key_secret("other"), quote)


def test_quote_time_picks_the_bucket():
    request, n = core.Request("ABC", "u"), core.nonce(b"boot", 0)
    quote = core.make_quote(SEED, request, 1_700_000_123_456, 1000, n)
    assert quote.price_cents == core.price_cents(SEED, "ABC", 1_700_000_123)
    assert quote.timestamp_ms == 1_700_000_123_456
    minute = core.make_quote(SEED, request, 1_700_000_123_456, 60_000, n)
    assert minute.price_cents == core.price_cents(SEED, "ABC", 1_700_000_123_456 // 60_000)


def test_nonce_refuses_bad_parts():
    with pytest.raises(ValueError):
        core.nonce(b"abc", 0)
    with pytest.raises(ValueError):
        core.nonce(b"abcd", -1)


# ---- requests and replies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "symbol", "user"),
    [
        (b"ABC,jsmith", "ABC", "jsmith"),
        (b"S,oY01WVirLr\r", "S", "oY01WVirLr"),
        (b"abc,jsmith", "ABC", "jsmith"),
        (b"ABC jsmith", "ABC", "jsmith"),
        (b"  S jsmith", "S", "jsmith"),  # AN's "%3s %s"
        (b"WWE ,  u1 ", "WWE", "u1"),
        (b"X\tuser_1.x@y", "X", "user_1.x@y"),
    ],
)
def test_good_requests(line, symbol, user):
    assert core.parse_request(line) == core.Request(symbol, user)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"", "empty request"),
        (b"   \r", "empty request"),
        (b"ABCD,jsmith", "symbol 'ABCD' must be 1 to 3 letters"),
        (b"A1,jsmith", "symbol 'A1' must be 1 to 3 letters"),
        (b",jsmith", "symbol '' must be 1 to 3 letters"),
        (b"ABC,", "empty userid"),
        (b"ABC", "expected SYM,userid, got 1 fields"),
        (b"ABC,jsmith,extra", "expected SYM,userid, got 3 fields"),
        (b"ABC jsmith extra", "expected SYM,userid, got 3 fields"),
        (b"ABC,js mith", "must be printable ASCII"),
        (b"ABC,js\x00mith", "must be printable ASCII"),
        (b"\xff\xfe\x00garbage", "not ASCII"),
        (b"\xc3\x89T,jsmith", "not ASCII"),
        (b"ABC," + b"u" * 256, "userid longer than 255"),
    ],
)
def test_bad_requests(line, message):
    with pytest.raises(core.QuoteError, match=message):
        core.parse_request(line)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_refuse_cleanly(data):
    try:
        request = core.parse_request(data)
    except core.QuoteError as exc:
        line = core.error_line(str(exc))
        assert line.startswith(b"ERROR,") and line.count(b"\n") == 1 and line.endswith(b"\n")
        line.decode("ascii")
    else:
        assert core.parse_request(core.request_line(request.symbol, request.user)) == request


def test_reply_round_trip_and_errors():
    quote = core.make_quote(
        SEED, core.Request("ABC", "jsmith"), 1_700_000_000_000, 1000, core.nonce(b"boot", 1)
    )
    assert core.parse_reply(quote.line()) == quote
    assert core.parse_reply(quote.line().replace(b"\n", b"\r\n")) == quote
    with pytest.raises(core.QuoteError, match="quote server: empty userid"):
        core.parse_reply(core.error_line("empty userid"))
    for bad in (
        b"58.1,A,u,1,k\n",
        b"58.17,A,u,x,k\n",
        b"58.17,A,u,1\n",
        b"\xff\n",
        b"-1.00,A,u,1,k",
    ):
        with pytest.raises(core.QuoteError):
            core.parse_reply(bad)


def test_request_line_checks_like_the_server():
    assert core.request_line("abc", "jsmith") == b"ABC,jsmith\n"
    with pytest.raises(core.QuoteError):
        core.request_line("ABCD", "jsmith")
    with pytest.raises(core.QuoteError):
        core.request_line("ABC", "")


def test_error_line_is_one_ascii_line():
    assert core.error_line("bad\r\nthing é") == b"ERROR,bad  thing \\xe9\n"


# ---- framing --------------------------------------------------------------------------------


def test_splitter_cuts_lines_across_chunks():
    splitter = core.LineSplitter(10)
    assert splitter.feed(b"AB") == []
    assert splitter.feed(b"C,u\nS,v\nX") == [b"ABC,u", b"S,v"]
    assert splitter.feed(b",w\n") == [b"X,w"]
    assert splitter.finish() == []


def test_splitter_reports_a_long_line_once_and_skips_its_rest():
    splitter = core.LineSplitter(10)
    assert splitter.feed(b"x" * 11) == [core.TOO_LONG]
    assert splitter.feed(b"x" * 100) == []
    assert splitter.feed(b"xx\nS,u\n") == [b"S,u"]
    assert splitter.feed(b"y" * 11 + b"\nS,v\n") == [core.TOO_LONG, b"S,v"]
    assert splitter.feed(b"z" * 10 + b"\n") == [b"z" * 10]


def test_splitter_answers_a_last_line_without_newline():
    splitter = core.LineSplitter(10)
    assert splitter.feed(b"S,u\nS,v") == [b"S,u"]
    assert splitter.finish() == [b"S,v"]
    skipping = core.LineSplitter(10)
    skipping.feed(b"x" * 20)
    assert skipping.finish() == []
