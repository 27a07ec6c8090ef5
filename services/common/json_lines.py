"""A JSON-lines TCP client (asyncio), for the tools that speak the gateway's channels: the random
traffic clients and the L2 replica."""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal
from typing import Any


class JsonLines:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int) -> JsonLines:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer)

    def send(self, message: dict[str, Any]) -> None:
        self.writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def recv(self) -> dict[str, Any] | None:
        """The next message (numbers with a fraction as exact Decimals); None once the server
        has closed the connection."""
        line = await self.reader.readline()
        return json.loads(line, parse_float=Decimal) if line else None

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
