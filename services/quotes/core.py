"""The quote server's pure core: prices, cryptokeys and the legacy wire format.

No clock, no randomness, no I/O: the shell passes in the quote's time and a nonce. The rules are
in docs/daytrading.md ("Quote server").

Prices. Every symbol has a base price (5.00 to 500.00, from a hash of seed and symbol) and a walk:
step k of a symbol is an integer of basis points in [-STEP_BP, STEP_BP] read from a BLAKE2b
digest of (seed, symbol, k // STEPS_PER_DIGEST). The price in time bucket b is the base moved by
the sum of the WINDOW steps ending at b. From one bucket to the next one step enters the window
and one leaves it, so the price moves a little at a time, like a random walk; the window bounds it
(never below 1 - WINDOW * STEP_BP / 10000 of the base, so always > 0), and any bucket costs the
same few hashes, whatever its distance from zero.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

WINDOW = 256  # steps summed into a bucket's price
STEP_BP = 35  # one step moves the price by at most this many basis points
STEPS_PER_DIGEST = 32  # a 64-byte digest holds 32 two-byte steps
MIN_BASE_CENTS, MAX_BASE_CENTS = 500, 50_000
MAX_LINE = 1024  # bytes of one request line, newline excluded
MAX_SYMBOL, MAX_USER = 3, 255
NONCE_BYTES, MAC_BYTES = 12, 16
ERROR_PREFIX = "ERROR,"


class QuoteError(ValueError):
    """A request the server refuses, or a reply the client cannot use."""


@dataclass(frozen=True, slots=True)
class Request:
    symbol: str  # 1-3 letters, upper case
    user: str


@dataclass(frozen=True, slots=True)
class Quote:
    price_cents: int
    symbol: str
    user: str
    timestamp_ms: int
    cryptokey: str

    @property
    def price(self) -> str:
        """The price as the wire shows it: dollars with two decimals, e.g. '58.17'."""
        return cents_text(self.price_cents)

    def line(self) -> bytes:
        """The reply line: price,SYM,userid,timestamp_ms,cryptokey + newline."""
        fields = (self.price, self.symbol, self.user, str(self.timestamp_ms), self.cryptokey)
        return (",".join(fields) + "\n").encode("ascii")


def cents_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


# ---- prices ---------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _seed_key(seed: str) -> bytes:
    return hashlib.sha256(b"marketlog quote walk\0" + seed.encode()).digest()


def _digest(seed: str, symbol: str, block: int | str) -> bytes:
    message = f"{symbol}\0{block}".encode()
    return hashlib.blake2b(message, key=_seed_key(seed), digest_size=64).digest()


@lru_cache(maxsize=4096)
def base_cents(seed: str, symbol: str) -> int:
    """A symbol's price before any step, 5.00 to 500.00."""
    value = int.from_bytes(_digest(seed, symbol.upper(), "base")[:8], "big")
    return MIN_BASE_CENTS + value % (MAX_BASE_CENTS - MIN_BASE_CENTS + 1)


@lru_cache(maxsize=8192)
def _block(seed: str, symbol: str, block: int) -> tuple[int, ...]:
    """Steps block * STEPS_PER_DIGEST .. + STEPS_PER_DIGEST - 1 of a symbol's walk."""
    digest = _digest(seed, symbol, block)
    span = 2 * STEP_BP + 1
    return tuple(
        int.from_bytes(digest[i : i + 2], "big") * span // 65536 - STEP_BP
        for i in range(0, 2 * STEPS_PER_DIGEST, 2)
    )


def step_bp(seed: str, symbol: str, k: int) -> int:
    """Step k of a symbol's walk, in basis points, in [-STEP_BP, STEP_BP]; any integer k."""
    block, index = divmod(k, STEPS_PER_DIGEST)
    return _block(seed, symbol.upper(), block)[index]


def walk_bp(seed: str, symbol: str, bucket: int) -> int:
    """The sum of the WINDOW steps ending at bucket: within +-WINDOW * STEP_BP."""
    symbol = symbol.upper()
    first, last = bucket - WINDOW + 1, bucket
    (b0, i0), (b1, i1) = divmod(first, STEPS_PER_DIGEST), divmod(last, STEPS_PER_DIGEST)
    if b0 == b1:
        return sum(_block(seed, symbol, b0)[i0 : i1 + 1])
    total = sum(_block(seed, symbol, b0)[i0:]) + sum(_block(seed, symbol, b1)[: i1 + 1])
    return total + sum(sum(_block(seed, symbol, b)) for b in range(b0 + 1, b1))


def price_cents(seed: str, symbol: str, bucket: int) -> int:
    """The price of symbol in a time bucket, in cents (> 0); the same for the same arguments."""
    moved = base_cents(seed, symbol) * (10_000 + walk_bp(seed, symbol, bucket))
    return max(1, (moved + 5_000) // 10_000)


# ---- cryptokeys ---------------------------------------------------------------------------


@lru_cache(maxsize=64)
def key_secret(seed: str) -> bytes:
    """The HMAC key of the cryptokeys (whoever knows the seed can check and make them)."""
    return hashlib.sha256(b"marketlog quote cryptokey\0" + seed.encode()).digest()


def nonce(boot: bytes, counter: int) -> bytes:
    """A quote's nonce: the server run's 4 random bytes and its quote counter (unique per run)."""
    if len(boot) != 4 or not 0 <= counter < 1 << 64:
        raise ValueError("boot is 4 bytes and counter is 0..2**64-1")
    return boot + counter.to_bytes(8, "big")


def _mac(secret: bytes, nonce_: bytes, price: str, symbol: str, user: str, ts: int) -> bytes:
    message = nonce_ + f"{price},{symbol},{user},{ts}".encode()
    return hmac.new(secret, message, hashlib.sha256).digest()[:MAC_BYTES]


def cryptokey(
    secret: bytes, price_cents: int, symbol: str, user: str, timestamp_ms: int, nonce_: bytes
) -> str:
    """base64(nonce + HMAC-SHA256(secret, nonce + 'price,SYM,user,ts')[:16]): 40 characters,
    unique per nonce, bound to what the quote says."""
    mac = _mac(secret, nonce_, cents_text(price_cents), symbol, user, timestamp_ms)
    return base64.b64encode(nonce_ + mac).decode("ascii")


def verify(secret: bytes, quote: Quote) -> bool:
    """Whether quote's cryptokey was made with secret for exactly this price, symbol, user, time."""
    try:
        raw = base64.b64decode(quote.cryptokey, validate=True)
    except ValueError:
        return False
    if len(raw) != NONCE_BYTES + MAC_BYTES:
        return False
    nonce_, mac = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
    expected = _mac(secret, nonce_, quote.price, quote.symbol, quote.user, quote.timestamp_ms)
    return hmac.compare_digest(mac, expected)


def make_quote(
    seed: str, request: Request, timestamp_ms: int, bucket_ms: int, nonce_: bytes
) -> Quote:
    """The quote for request at timestamp_ms: the price of its time bucket, a fresh cryptokey."""
    price = price_cents(seed, request.symbol, timestamp_ms // bucket_ms)
    key = cryptokey(key_secret(seed), price, request.symbol, request.user, timestamp_ms, nonce_)
    return Quote(price, request.symbol, request.user, timestamp_ms, key)


# ---- wire format ----------------------------------------------------------------------------


def _show(text: str) -> str:
    """Client text quoted for an error message: escaped, at most 20 characters of it."""
    return ascii(text[:20]) + ("..." if len(text) > 20 else "")


def check_symbol(text: str) -> str:
    if not (1 <= len(text) <= MAX_SYMBOL and text.isascii() and text.isalpha()):
        raise QuoteError(f"symbol {_show(text)} must be 1 to {MAX_SYMBOL} letters")
    return text.upper()


def check_user(text: str) -> str:
    if not text:
        raise QuoteError("empty userid")
    if len(text) > MAX_USER:
        raise QuoteError(f"userid longer than {MAX_USER} characters")
    if not all("!" <= c <= "~" and c != "," for c in text):
        raise QuoteError(f"userid {_show(text)} must be printable ASCII without ',' or spaces")
    return text


def parse_request(line: bytes) -> Request:
    """'SYM,userid' or 'SYM userid' (padding spaces and a trailing CR allowed) -> Request."""
    try:
        text = line.decode("ascii").strip()
    except UnicodeDecodeError:
        raise QuoteError("request is not ASCII text; expected SYM,userid") from None
    if not text:
        raise QuoteError("empty request; expected SYM,userid")
    parts = [p.strip() for p in text.split(",")] if "," in text else text.split()
    if len(parts) != 2:
        raise QuoteError(f"expected SYM,userid, got {len(parts)} fields")
    return Request(check_symbol(parts[0]), check_user(parts[1]))


def request_line(symbol: str, user: str) -> bytes:
    """The request for a quote, checked as the server checks it."""
    request = Request(check_symbol(symbol), check_user(user))
    return f"{request.symbol},{request.user}\n".encode("ascii")


def error_line(message: str) -> bytes:
    """'ERROR,<message>' + newline; the message is one line of ASCII (it may hold commas)."""
    clean = message.encode("ascii", "backslashreplace").decode("ascii")
    return (ERROR_PREFIX + clean.replace("\r", " ").replace("\n", " ") + "\n").encode("ascii")


def _cents(text: str) -> int:
    whole, dot, frac = text.partition(".")
    if not (whole.isdigit() and whole.isascii() and dot and len(frac) == 2 and frac.isdigit()):
        raise QuoteError(f"price {_show(text)} is not dollars with two decimals")
    return int(whole) * 100 + int(frac)


def parse_reply(line: bytes) -> Quote:
    """A reply line -> Quote; an ERROR line or anything malformed raises QuoteError."""
    try:
        text = line.decode("ascii").rstrip("\r\n")
    except UnicodeDecodeError:
        raise QuoteError("quote server reply is not ASCII") from None
    if text.startswith(ERROR_PREFIX):
        raise QuoteError("quote server: " + text[len(ERROR_PREFIX) :])
    fields = text.split(",")
    if len(fields) != 5 or not fields[3].isdigit() or not fields[4]:
        raise QuoteError(f"malformed quote server reply {_show(text)}")
    price, symbol, user, ts, key = fields
    return Quote(_cents(price), symbol, user, int(ts), key)


# ---- framing ------------------------------------------------------------------------------

TOO_LONG = None  # what LineSplitter yields for a line over its limit


class LineSplitter:
    """Cuts a byte stream into lines (without the newline) of at most max_len bytes.

    A longer line yields TOO_LONG once, as soon as it passes the limit, and the rest of it is
    dropped up to its newline; the lines after it are read as usual.
    """

    def __init__(self, max_len: int = MAX_LINE) -> None:
        self.max_len = max_len
        self.buffer = bytearray()
        self.skipping = False

    def feed(self, data: bytes) -> list[bytes | None]:
        self.buffer += data
        lines: list[bytes | None] = []
        while (end := self.buffer.find(b"\n")) >= 0:
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            if self.skipping:
                self.skipping = False
            else:
                lines.append(line if len(line) <= self.max_len else TOO_LONG)
        if len(self.buffer) > self.max_len:
            if not self.skipping:
                lines.append(TOO_LONG)
            self.skipping = True
            self.buffer.clear()
        return lines

    def finish(self) -> list[bytes | None]:
        """At end of stream: the last line if it had no newline."""
        rest, self.buffer = bytes(self.buffer), bytearray()
        return [rest] if rest.strip() and not self.skipping else []
