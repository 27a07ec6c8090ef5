"""Hand-written Avro for the matcher's hot records, byte for byte what services.common.codec writes.

fastavro spends ~15 µs per small record on per-call set-up; the matcher handles every command
and several outputs per command, so it encodes and decodes its own record types here (Avro binary:
zigzag varints, length-prefixed strings, enums and unions as indexes) behind the same single-object
header. Each hand-written shape is tied to the schema fingerprint it was written for: if a schema
changes, that record type falls back to the generic Codec until this file is updated (a unit test
compares both byte for byte). Input written by an older schema version is decoded by the Codec.
"""

from __future__ import annotations

from services.common.codec import MAGIC, Codec, CodecError

# The fingerprints (hex) of the schema versions the hand-written shapes below follow.
SHAPES = {
    "marketlog.match.PlaceOrder": "e414cd36eb39d6ca",
    "marketlog.match.CancelOrder": "fd15f2f457e43224",
    "marketlog.match.ReduceOrder": "5e859e507a17e5fc",
    "marketlog.match.ReplaceOrder": "47e066060b1c2ace",
    "marketlog.market.Trade": "835fa792492fa6eb",
    "marketlog.market.OrderRested": "29e404c80c4444bc",
    "marketlog.market.OrderCancelled": "6553c2f972bfbf5a",
    "marketlog.market.OrderReduced": "dc74ffb656c7100d",
    "marketlog.ledger.Fill": "90f5f0f73de81b65",
    "marketlog.ledger.OrderClosed": "3da348bd64335b59",
    "marketlog.ledger.OrderReduced": "ee27ac5fb3893e4e",
    "marketlog.ledger.MatchRejected": "78664a3e7a8185ac",
}

_ONE = [bytes((i,)) for i in range(128)]
NULL = b"\x00"
_BOOL_AT = {0: False, 1: True}
SOME = b"\x02"  # union branch 1 (the long), zigzag-encoded


_TWO = [bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(128, 16384)]


def long_bytes(n: int) -> bytes:
    """An Avro long: zigzag, then base-128 little-endian varint (short ones from tables)."""
    n = (n << 1) ^ (n >> 63)
    if n < 128:
        return _ONE[n]
    if n < 16384:
        return _TWO[n - 128]
    if n < 2097152:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_STRINGS: dict[str, bytes] = {}  # symbols and accounts repeat: keep their encodings


def str_bytes(s: str) -> bytes:
    found = _STRINGS.get(s)
    if found is None:
        if len(_STRINGS) >= 100_000:
            _STRINGS.clear()
        b = s.encode()
        found = _STRINGS[s] = long_bytes(len(b)) + b
    return found


def opt_long(n: int | None) -> bytes:
    return NULL if n is None else SOME + long_bytes(n)


def _read_long(d: bytes, p: int) -> tuple[int, int]:
    """An Avro long at p: (value, next position). Unrolled for the usual 1 to 3 bytes."""
    b = d[p]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), p + 1
    n = b & 0x7F
    b = d[p + 1]
    if b < 0x80:
        n |= b << 7
        return (n >> 1) ^ -(n & 1), p + 2
    n |= (b & 0x7F) << 7
    b = d[p + 2]
    if b < 0x80:
        n |= b << 14
        return (n >> 1) ^ -(n & 1), p + 3
    n |= (b & 0x7F) << 14
    shift = 21
    p += 3
    while True:
        b = d[p]
        p += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return (n >> 1) ^ -(n & 1), p
        shift += 7


def _read_str(d: bytes, p: int) -> tuple[str, int]:
    n = d[p]
    if n < 0x80:
        if n & 1:
            raise ValueError("negative string length")
        n >>= 1
        p += 1
    else:
        n, p = _read_long(d, p)
    end = p + n
    if end > len(d) or n < 0:
        raise IndexError("string past the end")
    return d[p:end].decode(), end


def _skip_str(d: bytes, p: int) -> int:
    n, p = _read_long(d, p)
    if n < 0 or p + n > len(d):
        raise IndexError("string past the end")
    return p + n


def _read_opt(d: bytes, p: int) -> tuple[int | None, int]:
    branch = d[p]
    if branch == 0:
        return None, p + 1
    if branch != 2:
        raise ValueError("bad union branch")
    return _read_long(d, p + 1)


class Envelope:
    """An input record's envelope, kept encoded: outputs copy its parts as bytes."""

    __slots__ = ("cid_raw", "key", "raw", "tail_raw", "ts")

    def __init__(self, key: str, ts: int, cid_raw: bytes, tail_raw: bytes, raw: bytes | None):
        self.key = key
        self.ts = ts
        self.cid_raw = cid_raw  # encoded command_id
        self.tail_raw = tail_raw  # encoded ts and reply_to
        self.raw = raw  # the whole encoded envelope, when it came off the wire

    @property
    def command_id(self) -> str:
        return _read_str(self.cid_raw, 0)[0]

    @property
    def reply_to(self) -> str:
        return _read_str(self.tail_raw, _read_long(self.tail_raw, 0)[1])[0]

    def keyed(self, key: str) -> bytes:
        """The encoded envelope of an output record keyed by key."""
        if key == self.key and self.raw is not None:
            return self.raw
        return self.cid_raw + str_bytes(key) + self.tail_raw


class Wire:
    """Encode the matcher's outputs and decode its inputs; the Codec covers everything else."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        schemas = codec.schemas
        enum = _enum_symbols(schemas["marketlog.match.PlaceOrder"])
        enum.update(_enum_symbols(schemas["marketlog.ledger.Fill"]))
        enum.update(_enum_symbols(schemas["marketlog.market.OrderCancelled"]))
        self.side_names = enum["marketlog.Side"]
        self.tif_names = enum["marketlog.TimeInForce"]
        self.stp_names = enum["marketlog.SelfTradePrevention"]
        self.side = {s: long_bytes(i) for i, s in enumerate(self.side_names)}
        # an enum index < 64 is one byte: byte -> symbol (a missing byte is a bad record)
        self._side_at = {i * 2: s for i, s in enumerate(self.side_names)}
        self._tif_at = {i * 2: s for i, s in enumerate(self.tif_names)}
        self._stp_at = {i * 2: s for i, s in enumerate(self.stp_names)}
        self.role = {s: long_bytes(i) for i, s in enumerate(enum["marketlog.Role"])}
        self.reason = {s: long_bytes(i) for i, s in enumerate(enum["marketlog.CloseReason"])}
        fast = {name: codec.fingerprint(name).hex() == fp for name, fp in SHAPES.items()}
        self.header = {name: MAGIC + codec.fingerprint(name) for name in SHAPES}
        # outputs: all or nothing, so the generic path is one switch in the service
        self.enabled = all(
            ok for name, ok in fast.items() if not name.startswith("marketlog.match")
        )
        readers = {
            "marketlog.match.PlaceOrder": self._place,
            "marketlog.match.CancelOrder": self._cancel,
            "marketlog.match.ReduceOrder": self._reduce,
            "marketlog.match.ReplaceOrder": self._replace,
        }
        self._decoders = {
            self.header[name]: (name, read) for name, read in readers.items() if fast[name]
        }

    # -- input -------------------------------------------------------------------------------
    def decode(self, value: bytes) -> tuple[str, Envelope | None, tuple | dict]:
        """(record name, envelope, the Book method's arguments after ts) of a match command.

        For a record this file has no shape for, the Codec decodes it and the third item is
        its field dict (envelope None if it has no envelope): see args_of.
        """
        entry = self._decoders.get(value[:10])
        if entry is None:
            name, rec = self.codec.decode(value)  # another version or another record type
            env = rec.get("envelope")
            if not isinstance(env, dict):
                return name, None, rec
            cid, key, ts, reply = env["command_id"], env["key"], env["ts"], env["reply_to"]
            tail = long_bytes(ts) + str_bytes(reply)
            return name, Envelope(key, ts, str_bytes(cid), tail, None), rec
        name, read = entry
        d = value
        try:
            # command_id and reply_to are copied as bytes, never decoded here
            n = d[10]
            p = 11 + (n >> 1) if n < 0x80 and not n & 1 else _skip_str(d, 10)
            cid_end = p
            n = d[p]
            if n < 0x80 and not n & 1:
                q = p + 1 + (n >> 1)
                key = d[p + 1 : q].decode()
                p = q
            else:
                key, p = _read_str(d, p)
            key_end = p
            ts, p = _read_long(d, p)
            n = d[p]
            p = p + 1 + (n >> 1) if n < 0x80 and not n & 1 else _skip_str(d, p)
            if p > len(d):
                raise IndexError("envelope past the end")
            envelope = Envelope(key, ts, d[10:cid_end], d[key_end:p], d[10:p])
            return name, envelope, read(d, p)
        except (IndexError, KeyError, ValueError, UnicodeDecodeError) as exc:
            raise CodecError(f"{name}: cannot decode: {exc}") from exc

    def _place(self, d: bytes, p: int) -> tuple:
        # one-byte varints (enums, small numbers, short strings) inline; the rest via helpers
        n = d[p]
        if n < 0x80 and not n & 1:
            q = p + 1 + (n >> 1)
            account = d[p + 1 : q].decode()
            p = q
        else:
            account, p = _read_str(d, p)
        oid, p = _read_long(d, p)
        side = self._side_at[d[p]]
        if d[p + 1] == 0:
            price, p = None, p + 2
        else:
            price, p = _read_opt(d, p + 1)
        qty, p = _read_long(d, p)
        tif = self._tif_at[d[p]]
        if d[p + 1] == 0:
            expire_ts, p = None, p + 2
        else:
            expire_ts, p = _read_opt(d, p + 1)
        post_only = _BOOL_AT[d[p]]
        stp = self._stp_at[d[p + 1]]
        if d[p + 2] == 0:
            budget, p = None, p + 3
        else:
            budget, p = _read_opt(d, p + 2)
        n = d[p]
        lot = (n >> 1) ^ -(n & 1) if n < 0x80 else _read_long(d, p)[0]
        return (oid, account, side, price, qty, tif, expire_ts, post_only, stp, budget, lot)

    def _cancel(self, d: bytes, p: int) -> tuple:
        account, p = _read_str(d, p)
        oid, p = _read_long(d, p)
        return (oid, account)

    def _reduce(self, d: bytes, p: int) -> tuple:
        account, p = _read_str(d, p)
        oid, p = _read_long(d, p)
        qty, p = _read_long(d, p)
        return (oid, account, qty)

    def _replace(self, d: bytes, p: int) -> tuple:
        account, p = _read_str(d, p)
        oid, p = _read_long(d, p)
        new_oid, p = _read_long(d, p)
        price, p = _read_long(d, p)
        qty, p = _read_long(d, p)
        return (oid, account, new_oid, price, qty)

    # -- output: env is an encoded envelope (Envelope.keyed) -----------------------------------

    def trade(self, env, seq, price, qty, maker, taker, side, m_rem, t_rem) -> bytes:
        return b"".join(
            (
                self.header["marketlog.market.Trade"],
                env,
                long_bytes(seq),
                long_bytes(price),
                long_bytes(qty),
                long_bytes(maker),
                long_bytes(taker),
                self.side[side],
                long_bytes(m_rem),
                long_bytes(t_rem),
            )
        )

    def rested(self, env, seq, oid, side, price, qty) -> bytes:
        return b"".join(
            (
                self.header["marketlog.market.OrderRested"],
                env,
                long_bytes(seq),
                long_bytes(oid),
                self.side[side],
                long_bytes(price),
                long_bytes(qty),
            )
        )

    def cancelled(self, env, seq, oid, side, price, qty, reason, rested) -> bytes:
        return b"".join(
            (
                self.header["marketlog.market.OrderCancelled"],
                env,
                long_bytes(seq),
                long_bytes(oid),
                self.side[side],
                opt_long(price),
                long_bytes(qty),
                self.reason[reason],
                b"\x01" if rested else b"\x00",
            )
        )

    def market_reduced(self, env, seq, oid, side, price, qty, remaining) -> bytes:
        return b"".join(
            (
                self.header["marketlog.market.OrderReduced"],
                env,
                long_bytes(seq),
                long_bytes(oid),
                self.side[side],
                long_bytes(price),
                long_bytes(qty),
                long_bytes(remaining),
            )
        )

    def fill(self, env, oid, symbol, side, price, qty, remaining, seq, role) -> bytes:
        return b"".join(
            (
                self.header["marketlog.ledger.Fill"],
                env,
                long_bytes(oid),
                symbol,
                self.side[side],
                long_bytes(price),
                long_bytes(qty),
                long_bytes(remaining),
                long_bytes(seq),
                self.role[role],
            )
        )

    def closed(self, env, oid, symbol, side, qty, reason, seq) -> bytes:
        return b"".join(
            (
                self.header["marketlog.ledger.OrderClosed"],
                env,
                long_bytes(oid),
                symbol,
                self.side[side],
                long_bytes(qty),
                self.reason[reason],
                opt_long(seq),
            )
        )

    def ledger_reduced(self, env, oid, symbol, side, qty, remaining, seq) -> bytes:
        return b"".join(
            (
                self.header["marketlog.ledger.OrderReduced"],
                env,
                long_bytes(oid),
                symbol,
                self.side[side],
                long_bytes(qty),
                long_bytes(remaining),
                long_bytes(seq),
            )
        )

    def match_rejected(self, env, oid, symbol, new_oid, reason) -> bytes:
        return b"".join(
            (
                self.header["marketlog.ledger.MatchRejected"],
                env,
                long_bytes(oid),
                symbol,
                opt_long(new_oid),
                str_bytes(reason),
            )
        )


def _enum_symbols(schema, found: dict | None = None) -> dict[str, list[str]]:
    """Every enum's symbols inside a parsed schema, by full name."""
    found = {} if found is None else found
    if isinstance(schema, dict):
        if schema.get("type") == "enum":
            found[schema["name"]] = list(schema["symbols"])
        for value in schema.values():
            _enum_symbols(value, found)
    elif isinstance(schema, list):
        for value in schema:
            _enum_symbols(value, found)
    return found


def args_of(name: str, rec: dict) -> tuple:
    """A Codec-decoded match command as the arguments Wire.decode gives for it."""
    if name == "marketlog.match.PlaceOrder":
        return (
            rec["order_id"],
            rec["account"],
            rec["side"],
            rec["price"],
            rec["qty"],
            rec["tif"],
            rec["expire_ts"],
            rec["post_only"],
            rec["stp"],
            rec["budget"],
            rec["lot"],
        )
    if name == "marketlog.match.CancelOrder":
        return (rec["order_id"], rec["account"])
    if name == "marketlog.match.ReduceOrder":
        return (rec["order_id"], rec["account"], rec["qty"])
    return (rec["order_id"], rec["account"], rec["new_order_id"], rec["price"], rec["qty"])
