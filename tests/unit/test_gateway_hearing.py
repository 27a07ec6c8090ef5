"""Lazy decoding on the gateway's account tail (services/gateway/hearing.py): a decision is decoded
whole only for a pending command, an account with a subscriber or a type the directory reads,
and everyone downstream of the bus gets exactly what always decoding gave them."""

from __future__ import annotations

import asyncio
import random

from services.common.codec import Codec, sample_value
from services.common.config import Settings
from services.gateway import commands as cmd
from services.gateway.bus import Bus, Event
from services.gateway.directory import Directory
from services.gateway.hearing import Heard, Interest, Unread, hear

CODEC = Codec()
ME = "gateway-0-abcd"
DECISIONS = sorted(n for n in CODEC.schemas if n.startswith(cmd.ACCOUNT))


def decision(name: str, command_id: str, key: str, **fields) -> bytes:
    envelope = {"command_id": command_id, "key": key, "ts": 1, "reply_to": ""}
    record = {**sample_value(CODEC.schemas[name]), **fields, "envelope": envelope}
    return CODEC.encode(name, record)


def test_a_decision_is_wanted_for_a_pending_command_a_followed_account_or_a_read_type():
    interest = Interest({"c1"}, {"a1"}, {cmd.ACCOUNT + "AccountCreated"})
    filled = cmd.ACCOUNT + "OrderFilled"
    assert interest.wants(filled, "c1", "a9")  # a counterparty's fill of my command
    assert interest.wants(filled, "c9", "a1")  # another gateway's order filled my subscriber
    assert interest.wants(cmd.ACCOUNT + "AccountCreated", "c9", "a9")  # the directory's
    assert not interest.wants(filled, "c9", "a9")


def test_peek_reads_the_type_command_id_and_key_of_every_decision_as_decode_does():
    for name in DECISIONS:
        value = decision(name, "c7", "a7")
        _, record = CODEC.decode(value)
        envelope = record["envelope"]
        assert CODEC.peek(value) == (name, (envelope["command_id"], envelope["key"]))


def test_hear_leaves_unwanted_decisions_unread():
    nobody = Interest(set(), set(), set())
    value = decision(cmd.FILLED, "c1", "a1")
    assert hear(CODEC, value, 3, 40, nobody) == Unread(Heard("a1", 3, 40), cmd.FILLED, "c1", value)
    wanted = hear(CODEC, value, 3, 40, Interest(set(), {"a1"}, set()))
    assert wanted == Event(cmd.FILLED, CODEC.decode(value)[1], 3, 40)


class Downstream:
    """Everything a bus hands on: answers, subscribers' events, the directory's, positions."""

    def __init__(self, bus: Bus, commands: list[cmd.Command], followed: list[str]) -> None:
        self.futures = {
            c.command_id: bus.expect(c, placed=c.name.endswith("PlaceOrder")) for c in commands
        }
        self.pushed: list[Event] = []
        self.read: list[Event] = []
        self.positions: list[tuple[str, int, int]] = []
        for account in followed:
            bus.subscribe(bus.account_subscribers, account, self.pushed.append)
        bus.watch(Directory.TYPES, self.read.append)
        bus.positions.append(lambda h: self.positions.append((h.key, h.partition, h.offset)))

    def seen(self) -> tuple:
        answers = {i: f.result() if f.done() else None for i, f in self.futures.items()}
        return answers, self.pushed, self.read, self.positions


def offline_bus() -> Bus:
    # no broker behind this address: the clients are created but never asked for anything
    bus = Bus(Settings(kafka="127.0.0.1:9"), ME, decision_timeout=30)
    bus._loop = asyncio.get_running_loop()
    for client in (bus.producer, bus.tail.consumer):
        client.close()
    return bus


def mix(seed: int) -> tuple[list[cmd.Command], list[bytes]]:
    """Decisions as N gateways cause them: this gateway's orders (accepted, placed, filled on
    both sides) and deposits among many more of other gateways', new accounts and symbols."""
    rng = random.Random(seed)
    stamp = lambda i: cmd.Stamp(i, 1, ME)  # noqa: E731
    commands, values = [], []
    for n in range(400):
        account, other = f"a{rng.randrange(30)}", f"a{rng.randrange(30)}"
        mine = rng.random() < 0.2
        command_id = f"{'m' if mine else 'o'}{n}"
        roll = rng.random()
        if roll < 0.05:
            values.append(decision(cmd.ACCOUNT + "AccountCreated", command_id, account))
        elif roll < 0.07:
            values.append(decision(cmd.ACCOUNT + "SymbolCreated", command_id, f"S{n}"))
        elif roll < 0.3:
            if mine:
                commands.append(cmd.deposit(stamp(command_id), account, 5))
            values.append(decision(cmd.ACCOUNT + "CashDeposited", command_id, account))
        else:  # an order that trades with another account's resting order
            if mine:
                spec = cmd.OrderSpec("S", "BUY", 100, 125)
                commands.append(cmd.place_order(stamp(command_id), account, spec))
            order = rng.randrange(1_000)
            accepted = {"order_id": order, "duplicate": False}
            values.append(decision(cmd.FILLED, command_id, other))  # the resting side's fill
            values.append(decision(cmd.ACCEPTED, command_id, account, **accepted))
            values.append(decision(cmd.FILLED, command_id, account, order_id=order))
            placed = {"order_id": order, "settlements": 2}
            values.append(decision(cmd.PLACED, command_id, account, **placed))
        if rng.random() < 0.1:  # a decision of no interest to anyone here
            values.append(decision(rng.choice(DECISIONS), f"x{n}", f"z{n}"))
    return commands, values


def test_lazily_decoded_the_bus_hands_on_what_always_decoding_does():
    async def scenario(lazy: bool, seed: int) -> tuple:
        bus = offline_bus()
        commands, values = mix(seed)
        downstream = Downstream(bus, commands, followed=["a3", "a17"])
        items = [
            hear(CODEC, v, n % 4, n, bus.interest) if lazy else Event(*CODEC.decode(v), n % 4, n)
            for n, v in enumerate(values)
        ]
        for start in range(0, len(items), 50):  # as the tail hands them on, in batches
            bus._decide(items[start : start + 50])
        unread = sum(isinstance(i, Unread) for i in items)
        return downstream.seen(), unread, len(items)

    for seed in range(5):
        always, none_unread, total = asyncio.run(scenario(False, seed))
        lazily, unread, _ = asyncio.run(scenario(True, seed))
        assert lazily == always
        assert none_unread == 0 and unread > total / 2  # most were another gateway's
        answered = [a for a in always[0].values() if a is not None]
        assert answered and always[1] and always[2]  # answers, pushes, the directory's all seen


def test_a_subscriber_that_comes_while_a_skipped_decision_is_on_its_way_gets_it():
    async def scenario() -> None:
        bus = offline_bus()
        value = decision(cmd.FILLED, "o1", "a5")
        item = hear(CODEC, value, 0, 7, bus.interest)  # on the tail's thread: nobody follows a5
        assert isinstance(item, Unread)
        pushed: list[Event] = []
        bus.subscribe(bus.account_subscribers, "a5", pushed.append)  # then, on the loop
        bus._decide([item])
        assert pushed == [Event(cmd.FILLED, CODEC.decode(value)[1], 0, 7)]

    asyncio.run(scenario())
