"""The gateway's Kafka shell: append commands, and hear the decisions and the public tape.

- One idempotent producer, polled by a thread. A command's decision proves it was written, so only
  a failed delivery is reported (``delivery.report.only.error``: no callback per order); it fails
  the command's pending decision with ``AppendError``. A pending decision not heard within the
  decision timeout, counted from the append, fails with ``DecisionTimeout``.
- One consumer of ``account.events`` and ``market.events`` (every partition, from its end,
  read_committed, no group). A decision resolves the future of the command it answers (matched
  by command id), goes to the private subscribers of its account and to the readers of its type
  (the directory); where it sits goes to the position listeners (sessions). Only what someone
  here needs is decoded whole (``hearing.py``): with several gateways most decisions are another
  instance's. The tape goes to the public subscribers of a symbol. One consumer, not one per
  topic: a processor's commit writes to both, and one fetch then brings both (two consumers
  made two fetches per commit, and two sets of librdkafka threads woke).

The consumer's thread hands whole batches to the event loop, so the loop never blocks on Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import replace

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from services.common.codec import Codec, CodecError
from services.common.config import Settings
from services.common.kafka import consumer_config, producer_config
from services.common.reader import end_of

from .commands import Command, Reply
from .hearing import Event, Heard, Interest, Unread, hear
from .metrics import DecisionsHeard

log = logging.getLogger(__name__)

LINGER_MS = 5
SWEEP_SECONDS = 0.1  # how often pending commands are checked for their decision timeout


class DecisionTimeout(TimeoutError):
    """No decision arrived in time; the command may still be decided later."""

    def __init__(self, message: str, command_id: str) -> None:
        super().__init__(message)
        self.command_id = command_id


class AppendError(RuntimeError):
    """The broker did not take the command."""

    def __init__(self, message: str, command_id: str) -> None:
        super().__init__(message)
        self.command_id = command_id


Subscriber = Callable[[Event], None]
Position = Callable[[Heard], None]
Read = Callable[[Message], "Event | Unread | None"]  # a record -> what to hand on, None: nothing
Deliver = Callable[[list], None]  # a batch of what was read, to the event loop


class _Tail:
    """A thread reading topics from their end, handing batches of events to the loop: each
    topic's through its own reader and delivery."""

    def __init__(self, settings: Settings, topics: dict[str, tuple[Read, Deliver]]) -> None:
        self.topics = topics
        self.consumer = Consumer(consumer_config(settings, None))
        self.start_offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> offset
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tail", daemon=True)

    def start(self) -> None:
        assignment = []
        for topic in self.topics:
            partitions = self.consumer.list_topics(topic, 10).topics[topic].partitions
            for p in sorted(partitions):
                high = end_of(self.consumer, TopicPartition(topic, p))
                self.start_offsets[topic, p] = high
                assignment.append(TopicPartition(topic, p, high))
        self.consumer.assign(assignment)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # consume(n, t) waits until n records or t: wake on the first record, then take
                # only what has already arrived (a 100 ms batch window was the answer's latency)
                batch = self.consumer.consume(1, 0.1)
                if batch:
                    batch += self.consumer.consume(999, 0)
            except Exception:  # a closed consumer at shutdown
                if self._stop.is_set():
                    return
                raise
            events: dict[str, list] = defaultdict(list)
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("%s: %s", message.topic(), error)
                    continue
                topic = message.topic()
                try:
                    item = self.topics[topic][0](message)
                except CodecError as exc:
                    log.warning("%s: undecodable record at %d: %s", topic, message.offset(), exc)
                    continue
                if item is not None:
                    events[topic].append(item)
            for topic, items in events.items():
                self.topics[topic][1](items)


class Bus:
    def __init__(self, settings: Settings, instance_id: str, decision_timeout: float) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.decision_timeout = decision_timeout
        self.codec = Codec()
        self.commands_topic = settings.topic("ledger.commands")
        # a few ms of linger: fewer, fuller produce requests (the broker's CPU is per request), and
        # delivery reports for failures only (a success needs nothing: its decision proves it)
        self.producer = Producer(
            producer_config(
                settings, None, **{"linger.ms": LINGER_MS, "delivery.report.only.error": True}
            )
        )
        # command id -> what has been heard about it, its answer's future, the events heard
        self._pending: dict[str, tuple[Reply, asyncio.Future, list[Event]]] = {}
        # (loop time of its decision timeout, command id, future) per expect(), in that order
        self._deadlines: deque[tuple[float, str, asyncio.Future]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self.account_subscribers: dict[str, set[Subscriber]] = defaultdict(set)
        self.market_subscribers: dict[str, set[Subscriber]] = defaultdict(set)
        self.positions: list[Position] = []  # where every decision sits (sessions)
        self.readers: dict[str, list[Subscriber]] = defaultdict(list)  # by record type
        # what the account tail decodes whole; the rest it reads only to the envelope
        self.interest = Interest(self._pending, self.account_subscribers, self.readers)
        self.heard = DecisionsHeard()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_producer, name="producer", daemon=True)
        self.partitions = 0
        self.started = False
        self.accounts_topic = settings.topic("account.events")
        self.tail = _Tail(
            settings,
            {
                self.accounts_topic: (self._hear_decision, self._from_thread(self._decide)),
                settings.topic("market.events"): (
                    self._hear_tape,
                    self._from_thread(self._publish),
                ),
            },
        )

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        meta = await asyncio.to_thread(self.producer.list_topics, self.commands_topic, 10)
        self.partitions = len(meta.topics[self.commands_topic].partitions)
        self._poller.start()
        await asyncio.to_thread(self.tail.start)
        self.started = True

    @property
    def account_starts(self) -> dict[int, int]:
        """Where the tail began on each partition of account.events (next offset)."""
        return {p: o for (t, p), o in self.tail.start_offsets.items() if t == self.accounts_topic}

    async def stop(self) -> None:
        await asyncio.to_thread(self.tail.stop)
        self._stop.set()
        await asyncio.to_thread(self._poller.join, 5)
        await asyncio.to_thread(self.producer.flush, 5)

    def _hear_decision(self, message: Message) -> Event | Unread:
        """On the tail's thread: decoded whole only if someone here wants it."""
        return hear(
            self.codec, message.value(), message.partition(), message.offset(), self.interest
        )

    def _hear_tape(self, message: Message) -> Event | None:
        """On the tail's thread: decoded only if its symbol has a subscriber here."""
        key = message.key()
        if key is not None and key.decode(errors="replace") not in self.market_subscribers:
            return None
        name, record = self.codec.decode(message.value())
        return Event(name, record, message.partition(), message.offset())

    def _from_thread(self, handler: Callable[[list], None]):
        def deliver(events: list[Event]) -> None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(handler, events)

        return deliver

    def _poll_producer(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    # -- appending ---------------------------------------------------------------------------
    def append(self, command: Command) -> None:
        """Append a command (to every partition if it is broadcast) without waiting: its
        decision (``expect`` first) says it was written; a failed write fails that decision."""
        value = self.codec.encode(command.name, command.record)
        for partition in range(self.partitions) if command.broadcast else [None]:
            extra = {} if partition is None else {"partition": partition}
            while True:
                try:
                    self.producer.produce(
                        self.commands_topic,
                        value,
                        command.key,
                        on_delivery=self._delivered,
                        **extra,
                    )
                    break
                except BufferError:  # local queue full: the poll thread drains it
                    self.producer.poll(0.01)

    def _delivered(self, error, message) -> None:
        """A failed delivery's report, on the poll thread (successes are not reported)."""
        if error is None or self._loop is None or self._loop.is_closed():
            return
        try:
            _, record = self.codec.decode(message.value())
        except CodecError:  # cannot happen for bytes this process encoded
            log.exception("delivery failed for an undecodable command")
            return
        command_id = record["envelope"]["command_id"]
        problem = AppendError(
            f"the log did not take command {command_id}: {error.str()}", command_id
        )
        self._loop.call_soon_threadsafe(self._fail, command_id, problem)

    def _fail(self, command_id: str, error: AppendError) -> None:
        entry = self._pending.pop(command_id, None)
        if entry is not None and not entry[1].done():
            entry[1].set_exception(error)

    def expect(self, command: Command, placed: bool = False) -> asyncio.Future:
        """A future for the command's answer; register before appending so none is missed.
        ``placed``: an order's answer waits until it is placed and its settlements decided.
        The decision timeout runs from now, however late the future is awaited (a connection
        awaits its pipelined requests' answers one after another)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending[command.command_id] = (Reply(command, placed), future, [])
        # one sweep timer for every pending command, not a timer each: the deadlines come in order
        self._deadlines.append((loop.time() + self.decision_timeout, command.command_id, future))
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)
        return future

    def forget(self, command: Command) -> None:
        self._pending.pop(command.command_id, None)

    def _sweep(self) -> None:
        """Expire every pending command past its deadline; again later while any deadline is
        left (those of commands answered since are skipped)."""
        loop = asyncio.get_running_loop()
        now, deadlines = loop.time(), self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, command_id, future = deadlines.popleft()
            entry = self._pending.get(command_id)
            if entry is not None and entry[1] is future:
                self._expire(command_id)
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep) if deadlines else None

    def _expire(self, command_id: str) -> None:
        """No answer within the decision timeout."""
        reply, future, heard = self._pending.pop(command_id)
        if future.done():
            return
        if reply.accepted:
            # accepted, but its placement was not heard in time: the order exists, so its
            # acceptance is the answer (the matcher or a ledger partition is lagging)
            log.warning("command %s: placement not heard in time", command_id)
            future.set_result(self._answer(reply, heard))
            return
        future.set_exception(
            DecisionTimeout(
                f"no decision for command {command_id} within "
                f"{self.decision_timeout:g}s; it may still be decided",
                command_id,
            )
        )

    async def decision(self, command: Command, future: asyncio.Future) -> Event:
        """The command's answer (``expect``'s future), or DecisionTimeout / AppendError."""
        try:
            return await future
        finally:
            self.forget(command)

    def submit(self, command: Command, placed: bool = False) -> asyncio.Future:
        """Expect the command's answer, then append it; returns that answer's future."""
        future = self.expect(command, placed)
        try:
            self.append(command)
        except BaseException:
            self.forget(command)
            raise
        return future

    # -- hearing -----------------------------------------------------------------------------
    def watch(self, names: Iterable[str], reader: Subscriber) -> None:
        """Every decision of these record types, decoded, goes to ``reader``."""
        for name in names:
            self.readers[name].append(reader)

    def _decide(self, items: list[Event | Unread]) -> None:
        decoded = 0
        for item in items:
            if isinstance(item, Unread):
                event = self._late(item)
                if event is None:
                    for note in self.positions:
                        note(item.heard)
                    continue
            else:
                event = item
            decoded += 1
            for reader in self.readers.get(event.name, ()):
                reader(event)
            if self.positions:
                heard = Heard(event.key, event.partition, event.offset)
                for note in self.positions:
                    note(heard)
            entry = self._pending.get(event.record["envelope"]["command_id"])
            if entry is not None:
                reply, future, heard = entry
                heard.append(event)
                if reply.hear(event.name, event.record) and not future.done():
                    del self._pending[reply.command.command_id]
                    future.set_result(self._answer(reply, heard))
            for subscriber in list(self.account_subscribers.get(event.key, ())):
                subscriber(event)
        self.heard.count(decoded, len(items) - decoded)

    def _late(self, item: Unread) -> Event | None:
        """A decision the tail left unread, decoded now if someone has turned up for it since
        (a subscriber that came while it was on its way to the loop); None if nobody has."""
        heard, name, command_id, value = item
        if not self.interest.wants(name, command_id, heard.key):
            return None
        try:
            name, record = self.codec.decode(value)
        except CodecError as exc:
            log.warning("account.events: undecodable record at %d: %s", heard.offset, exc)
            return None
        return Event(name, record, heard.partition, heard.offset)

    @staticmethod
    def _answer(reply: Reply, heard: list[Event]) -> Event:
        """The answering decision, carrying every other decision heard under its command id."""
        answer = heard[reply.answer]
        return replace(answer, related=tuple(e for e in heard if e is not answer))

    def _publish(self, events: list[Event]) -> None:
        for event in events:
            for subscriber in list(self.market_subscribers.get(event.key, ())):
                subscriber(event)

    def subscribe(self, table: dict[str, set[Subscriber]], key: str, fn: Subscriber) -> None:
        table[key].add(fn)

    def unsubscribe(self, table: dict[str, set[Subscriber]], key: str, fn: Subscriber) -> None:
        subscribers = table.get(key)
        if subscribers is not None:
            subscribers.discard(fn)
            if not subscribers:
                del table[key]
