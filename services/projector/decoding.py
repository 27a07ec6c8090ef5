"""Faster decoding of the projector's input records: Python readers generated per schema.

Decoding is the projector's largest cost per event. fastavro interprets the schema for every
record; this module generates, once per current schema, a straight-line Python function that
reads exactly that schema's fields (small varints inline, no per-field calls) and builds the same
dict fastavro would: measured about 30% less time per record. Only records written with a
*current* schema take this path; any other fingerprint (a released older version that needs
schema resolution) or any schema with types not handled here goes to ``Codec.decode``. Malformed
bytes raise ``CodecError`` either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.common.codec import HEADER_LEN, MAGIC, Codec, CodecError

Reader = Callable[[bytes, int], tuple[dict, int]]


class Unsupported(Exception):
    """A schema this generator does not handle: its records go to fastavro."""


def _varint(data: bytes, pos: int, first: int) -> tuple[int, int]:
    """The rest of a zigzag varint whose first byte (>= 0x80) was already read."""
    value, shift = first & 0x7F, 7
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


class _Generator:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.named: dict[str, Any] = {}
        self.count = 0

    def var(self) -> str:
        self.count += 1
        return f"v{self.count}"

    def const(self, value: Any) -> str:
        name = f"K{len(self.consts)}"
        self.consts[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def read(self, schema: Any, target: str, depth: int) -> None:
        """Lines that read one value of `schema` from data[p:] into `target`, advancing p."""
        if isinstance(schema, str) and schema in self.named:
            schema = self.named[schema]
        if isinstance(schema, list):
            return self.union(schema, target, depth)
        kind = schema if isinstance(schema, str) else schema["type"]
        if isinstance(schema, dict) and "name" in schema:
            self.named[schema["name"]] = schema
        if isinstance(schema, dict) and kind not in ("record", "enum"):
            if set(schema) - {"type"}:
                raise Unsupported(f"annotated {kind}")
            return self.read(kind, target, depth)
        if kind in ("long", "int"):
            self.emit(depth, "x = data[p]; p += 1")
            self.emit(depth, f"if x < 128: {target} = (x >> 1) ^ -(x & 1)")
            self.emit(depth, f"else: {target}, p = _varint(data, p, x)")
        elif kind in ("string", "bytes"):
            self.emit(depth, "x = data[p]; p += 1")
            self.emit(depth, "if x < 128: n = (x >> 1) ^ -(x & 1)")
            self.emit(depth, "else: n, p = _varint(data, p, x)")
            self.emit(depth, "if n < 0 or p + n > len(data): raise ValueError('bad length')")
            value = "data[p:p + n]" + (".decode()" if kind == "string" else "")
            self.emit(depth, f"{target} = {value}; p += n")
        elif kind == "boolean":
            self.emit(depth, f"{target} = {self.const({0: False, 1: True})}[data[p]]; p += 1")
        elif kind == "null":
            self.emit(depth, f"{target} = None")
        elif kind == "enum":
            symbols = schema["symbols"]
            if len(symbols) > 64:
                raise Unsupported("enum with more than 64 symbols")
            table = self.const({2 * i: s for i, s in enumerate(symbols)})  # zigzag, one byte
            self.emit(depth, f"{target} = {table}[data[p]]; p += 1")
        elif kind == "record":
            fields = []
            for f in schema["fields"]:
                var = self.var()
                self.read(f["type"], var, depth)
                fields.append(f"{f['name']!r}: {var}")
            self.emit(depth, f"{target} = {{{', '.join(fields)}}}")
        else:
            raise Unsupported(kind)
        return None

    def union(self, branches: list, target: str, depth: int) -> None:
        if len(branches) > 64:
            raise Unsupported("union with more than 64 branches")
        self.emit(depth, "x = data[p]; p += 1")
        for i, branch in enumerate(branches):
            self.emit(depth, f"{'if' if i == 0 else 'elif'} x == {2 * i}:")
            self.read(branch, target, depth + 1)
        self.emit(depth, "else: raise ValueError('bad union index')")


def compile_reader(schema: dict) -> Reader:
    """A function (data, pos) -> (record, end) for one parsed record schema."""
    gen = _Generator()
    gen.read(schema, "out", 1)
    source = "def read(data, p):\n" + "\n".join(gen.lines) + "\n    return out, p\n"
    namespace: dict[str, Any] = {"_varint": _varint, **gen.consts}
    exec(compile(source, f"<reader {schema.get('name')}>", "exec"), namespace)
    return namespace["read"]


class Decoder:
    """``Codec.decode`` with generated readers for records written with a current schema."""

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec or Codec()
        self.readers: dict[bytes, tuple[str, Reader]] = {}
        for name, schema in self.codec.schemas.items():
            try:
                self.readers[self.codec.fingerprint(name)] = (name, compile_reader(schema))
            except Unsupported:
                continue

    def decode(self, data: bytes) -> tuple[str, dict]:
        entry = self.readers.get(data[2:HEADER_LEN])
        if entry is None or data[:2] != MAGIC:
            return self.codec.decode(data)
        name, read = entry
        try:
            record, end = read(data, HEADER_LEN)
        except (IndexError, KeyError, ValueError, UnicodeDecodeError) as exc:
            raise CodecError(f"{name}: cannot decode: {exc!r}") from exc
        if end != len(data):
            raise CodecError(f"{name}: {len(data) - end} bytes after the record")
        return name, record
