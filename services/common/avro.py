"""Avro binary compiled to straight-line Python: generated once per schema, byte for byte fastavro.

fastavro interprets the schema on every call and spends 15-25 µs of set-up per small record on
this machine, more than a processor's whole decision takes. Here each schema is turned once into
Python source that reads or writes exactly its fields (one-byte varints and short strings inline,
no per-field calls) and compiled with ``exec``:

- ``compile_reader``: (bytes, start) -> the record dict fastavro returns; the whole rest of the
  bytes must be the record (or, with ``prefix``, may go on: an envelope read alone). With ``split``
  it also returns where the record's first field (the envelope) and one field of it (the key) begin
  and end, so a caller can copy those bytes.
- ``compile_writer``: record dict -> bytes, fastavro's rules for missing fields (the default, or
  null) included.
- ``compile_values_writer``: a tuple of the record's field values in schema order -> bytes; a
  field of record type is given already encoded (an envelope shared by several outputs is encoded
  once). ``compile_reader(..., as_tuple=True)`` is its inverse, without the dicts.

Types: null, boolean, int, long, string, bytes, enum, record, union (writers: a union of null and
one other type), named references. Anything else (float, double, fixed, array, map, logical types)
raises ``Unsupported``: the caller keeps fastavro for that schema. Every failure of a generated
function, on malformed bytes or on a value that does not fit, is a ``CodecError``; a long outside
64 bits (an int outside 32) is refused both ways. tests/unit/test_avro.py compares with fastavro.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Schema = Any  # a fastavro-parsed schema: a type name, a dict or a union list


class CodecError(ValueError):
    """A payload that is not a record of its schema, or a record that does not fit its schema."""


class Unsupported(Exception):
    """A schema shape the compiler does not handle: use fastavro for it."""


# what generated code raises on bad input; each generated function turns them into CodecError
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


def int_bytes(n: int) -> bytes:
    if not -(2**31) <= n < 2**31:
        raise OverflowError(f"{n} does not fit an int")
    return long_bytes(n)


_STRINGS: dict[str, bytes] = {}  # accounts, symbols, reasons repeat: keep their encodings


def str_bytes(s: str) -> bytes:
    """An Avro string: its UTF-8 length as a long, then the bytes."""
    found = _STRINGS.get(s)
    if found is None:
        if len(_STRINGS) >= 100_000:  # command ids never repeat: do not let them pile up
            _STRINGS.clear()
        raw = s.encode()
        found = _STRINGS[s] = long_bytes(len(raw)) + raw
    return found


def bytes_bytes(b: bytes) -> bytes:
    return long_bytes(len(b)) + b


def _unrolled_read_long() -> Callable[[bytes, int], tuple[int, int]]:
    """read_long, its ten steps written out: no loop, no shift counter (every ts is 8 bytes)."""
    lines = ["def read_long(d, p):", "    b = d[p]", "    n = b & 0x7F"]
    for i in range(1, 10):
        lines.append(f"    if b < 0x80: return (n >> 1) ^ -(n & 1), p + {i}")
        lines.append(f"    b = d[p + {i}]; n |= (b & 0x7F) << {7 * i}")
    lines.append("    if b >= 0x80 or n >> 64: raise ValueError('varint beyond 64 bits')")
    lines.append("    return (n >> 1) ^ -(n & 1), p + 10")
    scope: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<avro read_long>", "exec"), scope)
    return scope["read_long"]


read_long = _unrolled_read_long()
read_long.__doc__ = "The Avro long at d[p:]: (value, next position); refuses more than 64 bits."


def read_str(d: bytes, p: int) -> tuple[bytes, int]:
    """The length-prefixed bytes at p: (bytes, next position)."""
    n, p = read_long(d, p)
    end = p + n
    if n < 0 or end > len(d):
        raise ValueError("length past the end of the record")
    return d[p:end], end


class _Source:
    """Python source being generated, with the constants it refers to."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.consts: dict[str, object] = {}
        self.named: dict[str, dict] = {}  # named types seen so far, for references by name
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

    def resolve(self, schema: Schema) -> Schema:
        """The schema a reference by name stands for; a plain {"type": "long"} unwrapped."""
        if isinstance(schema, str):
            return self.named.get(schema, schema)
        if isinstance(schema, dict):
            kind = schema["type"]
            if "logicalType" in schema:
                raise Unsupported(f"logical type {schema['logicalType']}")
            if "name" in schema:
                self.named[schema["name"]] = schema
            if kind not in ("record", "enum", "fixed", "array", "map"):
                return self.resolve(kind)
        return schema

    def compile(self, head: str, body: list[str]) -> Callable:
        """A function `head` running `body` inside a try that turns any failure into CodecError."""
        text = "\n".join([head, "    try:", *body, "    except _BAD as exc:", _RAISE])
        scope = {**_HELPERS, **self.consts, "NAME": self.name}
        exec(compile(text, f"<avro {self.name}>", "exec"), scope)
        return scope["generated"]


_RAISE = "        raise CodecError(f'{NAME}: {exc!r}') from exc"
_HELPERS = {
    "_BAD": _BAD,
    "CodecError": CodecError,
    "read_long": read_long,
    "read_str": read_str,
    "long_bytes": long_bytes,
    "int_bytes": int_bytes,
    "str_bytes": str_bytes,
    "bytes_bytes": bytes_bytes,
    "SMALL": _SMALL,
}


# -- readers ------------------------------------------------------------------------------------
def _read(src: _Source, schema: Schema, depth: int, v: str = "") -> str:
    """Emit lines reading one value at d[p:] into v (a new variable unless given), advancing p;
    return the variable, or the literal, that holds it."""
    schema = src.resolve(schema)
    if isinstance(schema, list):
        return _read_union(src, schema, depth, v or src.var())
    kind = schema["type"] if isinstance(schema, dict) else schema
    if kind == "null":
        if v:
            src.emit(depth, f"{v} = None")
        return v or "None"
    v = v or src.var()
    if kind in ("long", "int"):  # a one- or two-byte varint inline: quantities, small ids
        src.emit(depth, "b = d[p]")
        src.emit(depth, f"if b < 0x80: {v} = (b >> 1) ^ -(b & 1); p += 1")
        src.emit(depth, "elif d[p + 1] < 0x80:")
        src.emit(depth + 1, f"b += (d[p + 1] << 7) - 0x80; {v} = (b >> 1) ^ -(b & 1); p += 2")
        src.emit(depth, f"else: {v}, p = read_long(d, p)")
    elif kind in ("string", "bytes"):  # a length under 64 is one byte
        text = ".decode()" if kind == "string" else ""
        src.emit(depth, "n = d[p]")
        src.emit(depth, "if n < 0x80 and not n & 1:")
        src.emit(depth + 1, "e = p + 1 + (n >> 1)")
        src.emit(depth + 1, "if e > L: raise ValueError('length past the end of the record')")
        src.emit(depth + 1, f"{v} = d[p + 1 : e]{text}; p = e")
        src.emit(depth, f"else: {v}, p = read_str(d, p); {v} = {v}{text}")
    elif kind == "boolean":
        src.emit(depth, f"{v} = {src.const({0: False, 1: True})}[d[p]]; p += 1")
    elif kind == "enum":
        _read_enum(src, schema["symbols"], v, depth)
    elif kind == "record":
        values = [(f["name"], _read(src, f["type"], depth)) for f in schema["fields"]]
        src.emit(depth, f"{v} = {{{', '.join(f'{n!r}: {x}' for n, x in values)}}}")
    else:
        raise Unsupported(kind)
    return v


def _read_enum(src: _Source, symbols: list[str], v: str, depth: int) -> None:
    if len(symbols) <= 64:  # every index is one byte: byte -> symbol
        table = src.const({2 * i: symbol for i, symbol in enumerate(symbols)})
        src.emit(depth, f"{v} = {table}[d[p]]; p += 1")
        return
    src.emit(depth, "i, p = read_long(d, p)")
    src.emit(depth, f"if not 0 <= i < {len(symbols)}: raise ValueError('bad enum index')")
    src.emit(depth, f"{v} = {src.const(tuple(symbols))}[i]")


def _read_union(src: _Source, branches: list, depth: int, v: str) -> str:
    if len(branches) > 64:
        raise Unsupported("union of more than 64 branches")
    src.emit(depth, "b = d[p]; p += 1")
    for i, branch in enumerate(branches):
        src.emit(depth, f"{'if' if i == 0 else 'elif'} b == {2 * i}:")
        _read(src, branch, depth + 1, v)
    src.emit(depth, "else: raise ValueError('bad union branch')")
    return v


def compile_reader(
    schema: Schema, name: str, *, split: str = "", as_tuple: bool = False, prefix: bool = False
) -> Callable:
    """(bytes, start) -> the record. as_tuple: the record's field values in schema order instead of
    a dict (nested records stay dicts). prefix: the record is only the start of the rest of the
    bytes (an envelope read alone, the record after it left unread). split names a field of the
    record's first field (a record, the envelope): the reader then returns (record, (bytes, where
    the first field begins, where that field begins and ends, where the first field ends, that
    field's value)), so a caller can copy the first field's bytes with another value in place of
    that field (``Envelope``). Raises Unsupported for a schema it cannot read."""
    src = _Source(name)
    schema = src.resolve(schema)
    if not isinstance(schema, dict) or schema["type"] != "record":
        raise Unsupported("not a record")
    values, marks = [], ""
    for i, field in enumerate(schema["fields"]):
        if i == 0 and split:
            value, marks = _read_split(src, field["type"], split)
        else:
            value = _read(src, field["type"], 2)
        values.append((field["name"], value))
    record = "{" + ", ".join(f"{n!r}: {x}" for n, x in values) + "}"
    if as_tuple:
        record = "(" + "".join(f"{x}, " for _, x in values) + ")"
    if not prefix:
        src.emit(2, "if p != L: raise ValueError(f'{L - p} bytes after the record')")
    src.emit(2, f"return {record}, {marks}" if split else f"return {record}")
    return src.compile("def generated(d, p):\n    L = len(d)", src.lines)


def _read_split(src: _Source, schema: Schema, split: str) -> tuple[str, str]:
    """The first field, a record, read like _read does, noting where it and its field `split`
    begin and end: (the variable holding it, the expression of the marks tuple)."""
    schema = src.resolve(schema)
    if not isinstance(schema, dict) or schema["type"] != "record":
        raise Unsupported("the first field is not a record")
    if split not in [f["name"] for f in schema["fields"]]:
        raise Unsupported(f"the first field has no field {split}")
    src.emit(2, "s0 = p")
    values = []
    for field in schema["fields"]:
        if field["name"] == split:
            src.emit(2, "s1 = p")
            value = _read(src, field["type"], 2)
            src.emit(2, "s2 = p")
            marks = f"(d, s0, s1, s2, s3, {value})"
        else:
            value = _read(src, field["type"], 2)
        values.append((field["name"], value))
    src.emit(2, "s3 = p")
    v = src.var()
    src.emit(2, f"{v} = {{{', '.join(f'{n!r}: {x}' for n, x in values)}}}")
    return v, marks


# -- writers ------------------------------------------------------------------------------------
def _write(src: _Source, schema: Schema, value: str) -> str:
    """An expression of the bytes of `value` (a variable) under schema."""
    schema = src.resolve(schema)
    if isinstance(schema, list):
        return _write_union(src, schema, value)
    kind = schema["type"] if isinstance(schema, dict) else schema
    if kind == "long":  # quantities, sequence numbers, small ids: from a table
        return f"(SMALL[{value}] if 0 <= {value} < 8192 else long_bytes({value}))"
    simple = {"int": "int_bytes", "string": "str_bytes", "bytes": "bytes_bytes"}
    if kind in simple:
        return f"{simple[kind]}({value})"
    if kind == "null":  # fastavro writes nothing for null, whatever the value
        return 'b""'
    if kind == "boolean":
        return f'(b"\\x01" if {value} else b"\\x00")'
    if kind == "enum":
        table = {symbol: long_bytes(i) for i, symbol in enumerate(schema["symbols"])}
        return f"{src.const(table)}[{value}]"
    if kind == "record":  # nested: a function of its own
        return f"{src.const(_record_writer(schema, src))}({value})"
    raise Unsupported(kind)


def _write_union(src: _Source, branches: list, value: str) -> str:
    """A union of null and one other type: the branch is whether the value is None."""
    if len(branches) != 2 or "null" not in branches:
        raise Unsupported(f"union {branches}")
    null = branches.index("null")
    other = _write(src, branches[1 - null], value)
    return f"({long_bytes(null)!r} if {value} is None else {long_bytes(1 - null)!r} + {other})"


def _field_value(field: dict, record: str, src: _Source) -> str:
    """How fastavro gets a field's value: the default when it is missing, else None if null is
    allowed ("null" in the type), else the record must have it."""
    name = field["name"]
    if "default" in field:
        return f"{record}.get({name!r}, {src.const(field['default'])})"
    if "null" in field["type"]:
        return f"{record}.get({name!r})"
    return f"{record}[{name!r}]"


def _record_writer(schema: dict, outer: _Source) -> Callable[[dict], bytes]:
    src = _Source(f"{outer.name} {schema['name']}")
    src.named = outer.named
    return _dict_writer(src, schema, b"")


def _dict_writer(src: _Source, schema: dict, prefix: bytes) -> Callable[[dict], bytes]:
    parts = [src.const(prefix)] if prefix else []
    for i, field in enumerate(schema["fields"]):
        src.emit(2, f"x{i} = {_field_value(field, 'r', src)}")
        parts.append(_write(src, field["type"], f"x{i}"))
    src.emit(2, f"return b''.join(({''.join(p + ', ' for p in parts)}))")
    return src.compile("def generated(r):", src.lines)


def compile_writer(schema: Schema, name: str, prefix: bytes = b"") -> Callable[[dict], bytes]:
    """record dict -> prefix + its Avro bytes. Raises Unsupported for a schema it cannot write."""
    src = _Source(name)
    schema = src.resolve(schema)
    if not isinstance(schema, dict) or schema["type"] != "record":
        raise Unsupported("not a record")
    return _dict_writer(src, schema, prefix)


def compile_values_writer(schema: Schema, name: str, prefix: bytes = b"") -> Callable[..., bytes]:
    """(field values in schema order, record-typed ones already encoded) -> prefix + Avro bytes.

    An optional second argument is the first field already encoded, in place of values[0]: a
    tuple that starts with an envelope dict is written with the envelope's bytes, unchanged.
    """
    src = _Source(name)
    schema = src.resolve(schema)
    if not isinstance(schema, dict) or schema["type"] != "record":
        raise Unsupported("not a record")
    fields = schema["fields"]
    parts = [src.const(prefix)] if prefix else []
    for i, field in enumerate(fields):
        kind = src.resolve(field["type"])
        is_record = isinstance(kind, dict) and kind["type"] == "record"
        part = f"x{i}" if is_record else _write(src, field["type"], f"x{i}")
        parts.append(f"(head if head is not None else {part})" if i == 0 else part)
    src.emit(2, f"({''.join(f'x{i}, ' for i in range(len(fields)))}) = v")
    src.emit(2, f"return b''.join(({''.join(p + ', ' for p in parts)}))")
    return src.compile("def generated(v, head=None):", src.lines)
