"""The private channel's server heartbeat through the whole system (docs/channels.md): a second
gateway, on the session system's log and database, with MARKETLOG_CHANNEL_HEARTBEAT_S at half a
second. An idle connection gets `{"message":"heartbeat"}`, one kept busy gets none, and the
connection still trades after its heartbeats."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest

from tests.support import ServiceProcs, free_ports

from .channel_client import LineClient, report

pytestmark = pytest.mark.e2e
INTERVAL = 0.5
BEAT = {"message": "heartbeat"}
PORTS = ("XML", "HTTP", "DAYTRADE", "PRIVATE", "PUBLIC")


@pytest.fixture(scope="module")
def beating(system, tmp_path_factory) -> Iterator[int]:
    """A gateway whose private channel beats every INTERVAL seconds; its private port."""
    settings = dataclasses.replace(
        system.settings, instance="heartbeat", run_dir=tmp_path_factory.mktemp("run-heartbeat")
    )
    # distinct: separate free_port() calls can hand out one port twice (CI of d9a6d5f: the
    # gateway exited on 'address already in use')
    ports = dict(zip(PORTS, free_ports(len(PORTS)), strict=True))
    procs = ServiceProcs(
        settings,
        tmp_path_factory.mktemp("logs-heartbeat"),
        **{f"MARKETLOG_{name}_PORT": str(port) for name, port in ports.items()},
        MARKETLOG_QUOTE_PORT=str(system.quote_port),
        MARKETLOG_ADMIN_KEY=system.admin_key,
        MARKETLOG_METRICS_PORT="0",
        MARKETLOG_DUMP_DIR=str(tmp_path_factory.mktemp("dumps-heartbeat")),
        MARKETLOG_TOPOLOGY=system.procs.env.get("MARKETLOG_TOPOLOGY", "split"),
        MARKETLOG_CHANNEL_HEARTBEAT_S=str(INTERVAL),
    )
    try:
        procs.start("gateway")
        yield ports["PRIVATE"]
    finally:
        procs.stop_all()


def test_an_idle_connection_gets_heartbeats_a_busy_one_none_and_it_still_trades(beating):
    client = LineClient(beating)
    try:
        began = time.monotonic()
        assert client.recv(timeout=5) == BEAT  # idle since it connected
        assert time.monotonic() - began >= INTERVAL * 0.8
        assert client.recv(timeout=5) == BEAT  # and again, a beat later

        # busy: a request every 0.1 s for 1.5 s; nothing comes back but the answers
        toggle = {"message": "cancelOnDisconnect", "enabled": False}
        for _ in range(15):
            time.sleep(0.1)
            client.send(toggle)
            assert client.recv(timeout=5) == toggle

        # it still trades: a far ask (nothing in the session's books bids near it), cancelled
        client.send(
            {"message": "createOrder", "orderId": 1, "side": "SELL", "price": 9999, "quantity": 1}
        )
        new = client.until(report)
        assert (new["orderId"], new["report"]) == (1, "NEW")
        assert client.recv(timeout=5) == BEAT  # idle again while the order rests
        client.send({"message": "cancelOrder", "orderId": 1})
        canceled = client.until(report)
        assert (canceled["orderId"], canceled["report"], canceled["quantity"]) == (1, "CANCELED", 1)
        assert all(m == BEAT or m.get("message") != "error" for m in client.seen), client.seen
    finally:
        client.close()
