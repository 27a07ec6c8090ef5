"""The JSON-lines channels' server heartbeat (services/gateway/channels/wire_lines.py): one sweep
per server sends the heartbeat line to every connection sent nothing for the interval; a
connection that keeps being answered gets none; 0 turns it off. An echo server over a real
loopback socket stands in for the private channel (whose desk needs the whole system: the e2e
test tests/e2e/test_channels_heartbeat.py)."""

from __future__ import annotations

import asyncio
import time

from services.gateway.channels.wire_lines import LineConnection, LineServer
from services.gateway.config import ChannelSettings

BEAT = b'{"message":"heartbeat"}\n'


class Echo(LineConnection):
    async def handle(self, line: bytes) -> None:
        self.send(line + b"\n")


class EchoServer(LineServer):
    def connection(self, reader, writer) -> Echo:
        return Echo(self.settings, reader, writer)


async def _served(heartbeat: float, client) -> None:
    server = EchoServer(ChannelSettings(host="127.0.0.1"), 0, "echo", heartbeat, BEAT)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
        try:
            await client(server, reader, writer)
        finally:
            writer.close()
    finally:
        await server.stop()


def test_an_idle_connection_gets_heartbeats_and_a_busy_one_none():
    interval = 0.3

    async def client(server, reader, writer):
        # busy: a line every 0.05 s for 1.2 s, each echoed at once: nothing but echoes comes back
        for n in range(24):
            await asyncio.sleep(0.05)
            writer.write(b"%d\n" % n)
            assert await asyncio.wait_for(reader.readline(), 2) == b"%d\n" % n
        # idle: heartbeats, each after interval .. interval + interval/4 of silence (+ slack)
        began = time.monotonic()
        gaps = []
        for _ in range(3):
            assert await asyncio.wait_for(reader.readline(), 2) == BEAT
            now = time.monotonic()
            gaps.append(now - began)
            began = now
        assert all(interval * 0.9 <= gap <= interval * 1.25 + 0.3 for gap in gaps), gaps
        # the connection still answers after them
        writer.write(b"again\n")
        assert await asyncio.wait_for(reader.readline(), 2) == b"again\n"

    asyncio.run(_served(interval, client))


def test_zero_turns_the_heartbeat_off():
    async def client(server, reader, writer):
        assert server._sweeper is None
        try:
            line = await asyncio.wait_for(reader.readline(), 0.6)
        except TimeoutError:
            line = None
        assert line is None
        writer.write(b"x\n")
        assert await asyncio.wait_for(reader.readline(), 2) == b"x\n"

    asyncio.run(_served(0.0, client))


def test_the_setting_from_the_environment(monkeypatch):
    monkeypatch.delenv("MARKETLOG_CHANNEL_HEARTBEAT_S", raising=False)
    assert ChannelSettings().private_heartbeat == 30.0
    monkeypatch.setenv("MARKETLOG_CHANNEL_HEARTBEAT_S", "0")
    assert ChannelSettings().private_heartbeat == 0.0
    monkeypatch.setenv("MARKETLOG_CHANNEL_HEARTBEAT_S", "0.2")
    assert ChannelSettings().private_heartbeat == 0.2
