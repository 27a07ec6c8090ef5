"""The load generator's bookkeeping: open-loop pacing and what a step's summary says."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from bench.loadgen import ChannelClient, StepResult, _pace


def test_latency_runs_from_the_due_time_and_the_thirds_split_by_due_time():
    result = StepResult("xml", offered=10, seconds=3.0, start=100.0)
    result.sent = 4
    result.record(due=100.5, now=100.51, ok=True, order_id=1)  # first third: 10 ms
    result.record(due=102.5, now=102.9, ok=True, order_id=2)  # last third: 400 ms
    result.record(due=101.5, now=101.52, ok=False, order_id=None)  # middle, an error
    result.record(due=102.9, now=104.0, ok=True, order_id=4)  # answered after the step
    summary = result.summary()
    assert summary["answered"] == 4 and summary["errors"] == 1
    assert summary["achieved_per_s"] == 1.0  # 3 answered within seconds + 0.5, over 3 s
    assert summary["p99_first_third_ms"] == pytest.approx(10, rel=0.01)
    assert summary["p99_last_third_ms"] == pytest.approx(1100, rel=0.01)
    assert summary["latency_ms"]["p50"] == pytest.approx(20, rel=0.01)
    assert [order for order, _, _ in result.answers] == [1, 2, 4]


def test_requests_fall_due_on_the_clock_whatever_the_sender_does():
    sent: list[tuple[int, float]] = []
    result = StepResult("xml", offered=200, seconds=0.2)
    asyncio.run(_pace(200, 0.2, result, lambda i, due: sent.append((i, due))))
    assert [i for i, _ in sent] == list(range(40)) and result.sent == 40
    gaps = {round(b - a, 9) for (_, a), (_, b) in itertools.pairwise(sent)}
    assert gaps == {0.005}
    assert sent[0][1] == result.start


def test_the_channel_client_times_each_order_to_its_own_report_across_steps():
    """A stand-in line server answers out of order and sends other lines between; the client
    must match answers by orderId, count an error as answered but failed, and never reuse an
    orderId in a later step (an account refuses a reused one)."""
    seen: list[int] = []

    async def serve(reader, writer):
        login = json.loads(await reader.readline())
        writer.write(b'{"message":"heartbeat"}\n')
        writer.write(json.dumps({"message": "login", "account": login["apiKey"]}).encode() + b"\n")
        held = []
        while line := await reader.readline():
            oid = json.loads(line)["orderId"]
            seen.append(oid)
            held.append(oid)
            if len(held) == 2:  # answer pairs backwards, a FILL first
                for o in reversed(held):
                    report = (
                        {"message": "error", "orderId": o, "text": "no"}
                        if o % 4 == 0
                        else {"message": "executionReport", "orderId": o, "report": "NEW"}
                    )
                    writer.write(b'{"message":"executionReport","orderId":1,"report":"FILL"}\n')
                    writer.write(json.dumps(report).encode() + b"\n")
                held.clear()

    async def scenario():
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = ChannelClient("127.0.0.1", port, ["k1"])
        await client.open()
        line = b'{"message":"createOrder","orderId":{oid},"side":"BUY","price":1,"quantity":1}\n'
        results = []
        for _ in range(2):
            result = StepResult("private", offered=200, seconds=0.04)
            await client.step(result, 200, [[line]])
            results.append(result.summary())
        client.close()
        server.close()
        return results

    first, second = asyncio.run(scenario())
    assert seen == list(range(1, 17))
    assert (first["sent"], first["answered"], first["errors"]) == (8, 8, 2)
    assert (second["sent"], second["answered"], second["errors"]) == (8, 8, 2)
