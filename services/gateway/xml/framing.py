"""The XML/TCP framing: a line with the body's base-10 byte count, then exactly that many bytes.

Pure and incremental: feed it whatever the socket gave, take out whole frames. A broken length
line or an oversized body is fatal for the connection (the byte stream cannot be re-synchronised
safely); an empty body is answered and the connection goes on.

A length line may carry the word ``framed`` after the count (``"123 framed\\n"``): the reply to
that request is then framed the same way. Blank lines between requests are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LINE = 64
_LENGTH = re.compile(rb"[ \t]*(\d{1,12})(?:[ \t]+(framed))?[ \t]*", re.IGNORECASE)


class FrameError(ValueError):
    """The byte stream is not a valid frame; ``fatal``: the connection must be closed after."""

    def __init__(self, message: str, *, fatal: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.fatal = fatal


@dataclass(frozen=True)
class Frame:
    body: bytes
    framed_reply: bool


def _show(raw: bytes) -> str:
    text = raw[:40].decode("utf-8", "replace")
    return repr(text) + ("…" if len(raw) > 40 else "")


def parse_length_line(line: bytes, max_body: int) -> tuple[int, bool]:
    """The byte count and the framed-reply flag of one length line (without its newline)."""
    line = line.rstrip(b"\r")
    match = _LENGTH.fullmatch(line)
    if match is None:
        if line.lstrip().startswith(b"<"):
            raise FrameError(
                "missing length line: send the XML's size in bytes on a line of its own first"
            )
        raise FrameError(f"bad length line {_show(line)}: expected a byte count, then a newline")
    size = int(match.group(1))
    if size > max_body:
        raise FrameError(f"request of {size} bytes is over the limit of {max_body} bytes")
    return size, match.group(2) is not None


class FrameReader:
    """Splits a byte stream into frames."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self._buffer = bytearray()
        self._want: int | None = None  # body size once its length line has been read
        self._framed = False

    @property
    def mid_frame(self) -> bool:
        """Whether part of a request has arrived (a length line, or part of one)."""
        return self._want is not None or bool(self._buffer.strip())

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next(self) -> Frame | None:
        """The next whole frame, None if more bytes are needed; FrameError if it cannot be one."""
        while self._want is None:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                if len(self._buffer) > MAX_LINE:
                    raise FrameError(
                        f"bad length line {_show(bytes(self._buffer))}: no newline "
                        f"within {MAX_LINE} bytes"
                    )
                return None
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            if line.strip() == b"":
                continue
            self._want, self._framed = parse_length_line(line, self.max_body)
        if len(self._buffer) < self._want:
            return None
        body = bytes(self._buffer[: self._want])
        del self._buffer[: self._want]
        framed, self._want = self._framed, None
        if not body.strip():
            raise FrameError("empty request: the length line announced no XML", fatal=False)
        return Frame(body, framed)

    def truncated(self) -> FrameError | None:
        """At end of stream: the error for a request cut short, if one was."""
        if self._want is not None:
            return FrameError(
                f"truncated request: the length line announced {self._want} bytes, "
                f"only {len(self._buffer)} arrived"
            )
        if self._buffer.strip():
            return FrameError(f"incomplete length line {_show(bytes(self._buffer))}")
        return None


def frame(body: bytes) -> bytes:
    """A reply in the request framing: its length line, then the body."""
    return b"%d\n" % len(body) + body
