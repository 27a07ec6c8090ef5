"""The bus's decision timeout: counted from the append (``expect``), however late the answer is
awaited, by one sweep over the pending commands' deadlines, not a timer per command."""

from __future__ import annotations

import asyncio

import pytest

from services.common.config import Settings
from services.gateway import commands as cmd
from services.gateway.bus import SWEEP_SECONDS, Bus, DecisionTimeout, Event


def stamp(command_id: str) -> cmd.Stamp:
    return cmd.Stamp(command_id, 1_700_000_000_000_000, "gateway-0-abcd")


def decision(name: str, key: str, command_id: str, offset: int, **fields) -> Event:
    envelope = {"command_id": command_id, "key": key, "ts": 1, "reply_to": "gateway-0-abcd"}
    return Event(cmd.ACCOUNT + name, {"envelope": envelope, **fields}, 0, offset)


def offline_bus(timeout: float) -> Bus:
    # no broker behind this address: the clients are created but never asked for anything
    bus = Bus(Settings(kafka="127.0.0.1:9"), "gateway-0-abcd", decision_timeout=timeout)
    bus._loop = asyncio.get_running_loop()
    for client in (bus.producer, bus.tail.consumer):
        client.close()
    return bus


def test_the_decision_timeout_runs_from_the_append_not_from_the_await():
    async def scenario() -> None:
        bus = offline_bus(0.2)
        spec = cmd.OrderSpec("SPY", "BUY", 100, 125)
        lost = cmd.deposit(stamp("a1"), "1", 5)
        placed = cmd.place_order(stamp("a2"), "1", spec)
        answered = cmd.deposit(stamp("a3"), "2", 5)
        futures = [bus.expect(lost), bus.expect(placed, placed=True), bus.expect(answered)]
        # the order accepted but its placement never heard; the deposit decided
        bus._decide(
            [
                decision("OrderAccepted", "1", "a2", 1, order_id=9, duplicate=False),
                decision("CashDeposited", "2", "a3", 2, amount=5),
            ]
        )
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.sleep(0.2 + 2 * SWEEP_SECONDS)  # nobody awaits them meanwhile
        assert all(f.done() for f in futures) and not bus._pending
        with pytest.raises(DecisionTimeout, match=r"no decision for command a1 within 0\.2s"):
            await bus.decision(lost, futures[0])
        # accepted: its acceptance is the answer
        assert (await bus.decision(placed, futures[1])).record["order_id"] == 9
        assert (await bus.decision(answered, futures[2])).name.endswith("CashDeposited")
        assert loop.time() - began < 0.2 + 3 * SWEEP_SECONDS
        assert bus._sweeper is None  # no deadline left: no timer either

    asyncio.run(scenario())


def test_a_command_answered_or_forgotten_is_not_expired_later():
    async def scenario() -> None:
        bus = offline_bus(0.1)
        first = cmd.deposit(stamp("b1"), "1", 5)
        future = bus.expect(first)
        bus._decide([decision("CashDeposited", "1", "b1", 1, amount=5)])
        bus.forget(first)
        again = bus.expect(first)  # the same id expected anew: its own deadline
        await asyncio.sleep(0.05)
        await asyncio.sleep(0.1 + SWEEP_SECONDS)
        assert future.result().offset == 1
        assert isinstance(again.exception(), DecisionTimeout)

    asyncio.run(scenario())
