"""Ledger records to and from bytes: what services.common.codec writes, several times faster.

fastavro spends 15-20 µs of set-up on every single record, more than the ledger's whole decision
takes. So each current schema the ledger reads (``marketlog.ledger.*``) or writes (its decisions)
is compiled once, at start, into straight-line Python: a decoder from bytes to the record dict and
an encoder from a decision's values tuple (``decisions.FIELDS`` order) to bytes, behind the same
single-object header. Anything else goes to the Codec: records written by an older schema version
(another fingerprint), and any schema whose shape this compiler does not know or whose field order
differs from ``FIELDS``. tests/unit/test_ledger_wire.py checks both paths agree byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable

from services.common.codec import HEADER_LEN, MAGIC, Codec, CodecError

from .decisions import FIELDS, Decision, as_record

_BAD = (IndexError, KeyError, ValueError, TypeError, AttributeError, OverflowError)
_ONE = [bytes((i,)) for i in range(128)]
_TWO = [bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(16384)]
_MORE = [bytes(((i & 0x7F) | 0x80, (i >> 7) | 0x80)) for i in range(16384)]  # 14 bits, not last
_SMALL = [_TWO[2 * i] if 2 * i > 127 else _ONE[2 * i] for i in range(8192)]  # longs 0..8191


def long_bytes(n: int) -> bytes:
    """An Avro long: zigzag, then a little-endian base-128 varint (14 bits per table lookup)."""
    z = (n << 1) ^ (n >> 63)
    if z < 16384:
        return _TWO[z] if z > 127 else _ONE[z]
    if z >> 64:
        raise OverflowError(f"{n} does not fit a long")
    head = b""
    while z >= 16384:
        head += _MORE[z & 0x3FFF]
        z >>= 14
    return head + (_TWO[z] if z > 127 else _ONE[z])


_STRINGS: dict[str, bytes] = {}  # accounts, symbols, reasons repeat: keep their encodings


def str_bytes(s: str) -> bytes:
    found = _STRINGS.get(s)
    if found is None:
        if len(_STRINGS) >= 200_000:
            _STRINGS.clear()
        raw = s.encode()
        found = _STRINGS[s] = long_bytes(len(raw)) + raw
    return found


def read_long(d: bytes, p: int) -> tuple[int, int]:
    """The Avro long at p: (value, next position). The first three bytes unrolled."""
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
    shift, p = 21, p + 3
    while True:
        b = d[p]
        p += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return (n >> 1) ^ -(n & 1), p
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than a long")


def read_str(d: bytes, p: int) -> tuple[str, int]:
    n, p = read_long(d, p)
    end = p + n
    if n < 0 or end > len(d):
        raise ValueError("string past the end of the record")
    return d[p:end].decode(), end


class Unsupported(Exception):
    """A schema shape the compiler does not handle: that record type uses the Codec."""


class _Source:
    """Python source being generated, with the constants it refers to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, object] = {}
        self.count = 0

    def var(self) -> str:
        self.count += 1
        return f"v{self.count}"

    def const(self, value: object) -> str:
        name = f"K{len(self.consts)}"
        self.consts[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def compile(self, name: str, head: str, tail: str) -> Callable:
        text = "\n".join([head, *self.lines, tail])
        scope = {"read_long": read_long, "read_str": read_str, **self.consts}
        scope["long_bytes"], scope["str_bytes"], scope["SMALL"] = long_bytes, str_bytes, _SMALL
        exec(compile(text, f"<wire {name}>", "exec"), scope)
        return scope["generated"]


def _read(src: _Source, schema, depth: int) -> str:
    """Emit code reading one value at d[p:]; return the variable (or literal) that holds it."""
    if isinstance(schema, list):
        return _read_optional(src, schema, depth)
    kind = schema["type"] if isinstance(schema, dict) else schema
    if kind == "null":
        return "None"
    v = src.var()
    if kind in ("long", "int"):  # small ones are one byte
        src.emit(depth, "b = d[p]")
        src.emit(depth, f"if b < 0x80: {v} = (b >> 1) ^ -(b & 1); p += 1")
        src.emit(depth, f"else: {v}, p = read_long(d, p)")
    elif kind == "string":  # a length under 64 is one byte
        src.emit(depth, "n = d[p]")
        src.emit(depth, "if n < 0x80 and not n & 1:")
        src.emit(depth + 1, f"e = p + 1 + (n >> 1); {v} = d[p + 1 : e].decode()")
        src.emit(depth + 1, "if e > len(d): raise ValueError('string past the end')")
        src.emit(depth + 1, "p = e")
        src.emit(depth, f"else: {v}, p = read_str(d, p)")
    elif kind == "boolean":
        src.emit(depth, f"{v} = {src.const({0: False, 1: True})}[d[p]]; p += 1")
    elif kind == "enum" and len(schema["symbols"]) <= 64:  # an index under 64 is one byte
        symbols = src.const({2 * i: symbol for i, symbol in enumerate(schema["symbols"])})
        src.emit(depth, f"{v} = {symbols}[d[p]]; p += 1")
    elif kind == "record":
        values = [(f["name"], _read(src, f["type"], depth)) for f in schema["fields"]]
        fields = ", ".join(f"{name!r}: {value}" for name, value in values)
        src.emit(depth, f"{v} = {{{fields}}}")
    else:
        raise Unsupported(kind)
    return v


def _read_optional(src: _Source, branches: list, depth: int) -> str:
    if len(branches) != 2 or branches[0] != "null":
        raise Unsupported(str(branches))
    v = src.var()
    src.emit(depth, "b = d[p]; p += 1")
    src.emit(depth, f"if b == 0: {v} = None")
    src.emit(depth, "elif b == 2:")
    inner = _read(src, branches[1], depth + 1)
    src.emit(depth + 1, f"{v} = {inner}")
    src.emit(depth, "else: raise ValueError('bad union branch')")
    return v


ENVELOPE = (("command_id", "string"), ("key", "string"), ("ts", "long"), ("reply_to", "string"))


def _envelope_of(schema: dict) -> dict:
    """The record's envelope schema, if it is the first field and has the known shape."""
    first = schema["fields"][0]
    envelope = first["type"]
    shape = tuple((f["name"], f["type"]) for f in envelope.get("fields", ()))
    if first["name"] != "envelope" or shape != ENVELOPE:
        raise Unsupported("no envelope of the known shape")
    return envelope


def compile_decoder(name: str, schema: dict) -> Callable[[bytes, int], tuple]:
    """(bytes, position after the header) -> (record as fastavro returns it, the encoded
    command_id, the encoded ts + reply_to): outputs of this record reuse those bytes."""
    _envelope_of(schema)
    src = _Source()
    src.emit(1, "q0 = p")
    cid = _read(src, "string", 1)
    src.emit(1, "q1 = p")
    key = _read(src, "string", 1)
    src.emit(1, "q2 = p")
    ts, reply_to = _read(src, "long", 1), _read(src, "string", 1)
    src.emit(1, "q3 = p")
    env = f"{{'command_id': {cid}, 'key': {key}, 'ts': {ts}, 'reply_to': {reply_to}}}"
    values = [("envelope", env)]
    values += [(f["name"], _read(src, f["type"], 1)) for f in schema["fields"][1:]]
    record = "{" + ", ".join(f"{field!r}: {value}" for field, value in values) + "}"
    return src.compile(name, "def generated(d, p):", f"    return {record}, d[q0:q1], d[q2:q3]")


def _write(src: _Source, schema, value: str) -> str:
    """An expression of the bytes of `value` (an expression) under schema."""
    if isinstance(schema, list):
        if len(schema) != 2 or schema[0] != "null":
            raise Unsupported(str(schema))
        inner = _write(src, schema[1], value)
        return f'(b"\\x00" if {value} is None else b"\\x02" + {inner})'
    kind = schema["type"] if isinstance(schema, dict) else schema
    if kind in ("long", "int"):  # quantities, sequence numbers, small ids: from a table
        return f"(SMALL[{value}] if 0 <= {value} < 8192 else long_bytes({value}))"
    if kind == "string":
        return f"str_bytes({value})"
    if kind == "boolean":
        return f'(b"\\x01" if {value} else b"\\x00")'
    if kind == "enum":
        table = {symbol: long_bytes(i) for i, symbol in enumerate(schema["symbols"])}
        return f"{src.const(table)}[{value}]"
    if kind == "record":
        parts = [_write(src, f["type"], f"{value}[{f['name']!r}]") for f in schema["fields"]]
        return " + ".join(parts)
    raise Unsupported(kind)


def compile_encoder(name: str, schema: dict, header: bytes) -> Callable[..., bytes]:
    """(key, decision values, encoded command_id, encoded ts + reply_to) -> the record's bytes,
    its envelope keyed by key."""
    fields = schema["fields"]
    _envelope_of(schema)
    if tuple(f["name"] for f in fields) != FIELDS[name]:
        raise Unsupported("fields differ from decisions.FIELDS")
    src = _Source()
    parts = [src.const(header), "cid", "str_bytes(key)", "tail"]
    parts += [_write(src, f["type"], f"v[{i}]") for i, f in enumerate(fields) if i]
    src.emit(1, "return b''.join((" + ", ".join(parts) + ",))")
    return src.compile(name, "def generated(key, v, cid, tail):", "")


class Wire:
    """Decode the ledger's input and encode its decisions; the Codec covers everything else.

    The envelope of the last record decoded is kept encoded: decisions about it (nearly all of
    them) copy its command_id, ts and reply_to as bytes instead of encoding them again.
    """

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec or Codec()
        self._decoders: dict[bytes, tuple[str, Callable]] = {}
        self._encoders: dict[str, Callable] = {}
        for name, schema in self.codec.schemas.items():
            header = MAGIC + self.codec.fingerprint(name)
            try:
                if name.startswith("marketlog.ledger."):
                    self._decoders[header] = (name, compile_decoder(name, schema))
                if name in FIELDS:
                    self._encoders[name] = compile_encoder(name, schema, header)
            except Unsupported:
                continue
        self._env: dict | None = None
        self._env_bytes = (b"", b"")

    def decode(self, value: bytes) -> tuple[str, dict]:
        """(record name, record); raises CodecError for bytes that are not a known record."""
        found = self._decoders.get(value[:HEADER_LEN])
        if found is None:
            return self.codec.decode(value)
        name, read = found
        try:
            record, cid, tail = read(value, HEADER_LEN)
        except _BAD as exc:
            raise CodecError(f"{name}: cannot decode: {exc!r}") from exc
        self._env, self._env_bytes = record["envelope"], (cid, tail)
        return name, record

    def encode(self, decision: Decision) -> bytes:
        _, key, name, values = decision
        write = self._encoders.get(name)
        if write is None:
            return self.codec.encode(name, as_record(decision))
        try:
            env = values[0]
            if env is self._env:
                cid, tail = self._env_bytes
            else:
                cid = str_bytes(env["command_id"])
                tail = long_bytes(env["ts"]) + str_bytes(env["reply_to"])
            return write(key, values, cid, tail)
        except _BAD as exc:
            raise CodecError(f"{name}: {exc!r}") from exc
