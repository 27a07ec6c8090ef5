"""Killing a processor while it has input it has not read: a state the test makes, not one it
hopes a sleep lands in.

The recipe (``kill_with_unread_input``): give the processor input and wait until it has made
progress on it (it is up and working through it), pause it with SIGSTOP, note the ends of its input
partitions, give it more input and wait until that input is readable (committed), then SIGKILL
it. A paused process fetches nothing, so every record past the noted ends is certain to be unread
when the kill lands, whatever the machine's speed.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from services.common import reader
from services.common.config import Settings
from tests.support import wait_until

Key = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True)
class Kill:
    progress: int  # input offsets the processor committed between being watched and the pause
    unread: int  # committed input records past the ends it could have fetched, at the kill


def pause(proc: subprocess.Popen) -> None:
    """SIGSTOP, and wait until every thread of the process has stopped (a signal is delivered
    asynchronously): from then on it fetches, applies and commits nothing."""
    proc.send_signal(signal.SIGSTOP)
    tasks = Path(f"/proc/{proc.pid}/task")

    def stopped() -> bool:
        states = []
        for task in tasks.iterdir():
            try:
                stat = (task / "stat").read_text()
            except FileNotFoundError:  # a thread that just ended
                continue
            states.append(stat.rsplit(")", 1)[1].split()[0])
        return bool(states) and all(state in ("T", "t") for state in states)

    wait_until(stopped, 10, f"process {proc.pid} to stop", every=0.001)


def end_offsets(kafka: str, topics: Iterable[str]) -> dict[Key, int]:
    """The high watermark of every partition of the topics."""
    return reader.end_offsets(Settings(kafka=kafka), topics, committed=False)


def committed(kafka: str, group: str, topic: str) -> dict[Key, int]:
    """A consumer group's committed offsets on a topic, without joining the group. Read
    uncommitted: offsets in a paused processor's open transaction are not waited for."""
    consumer = Consumer(
        {"bootstrap.servers": kafka, "group.id": group, "isolation.level": "read_uncommitted"}
    )
    try:
        partitions = consumer.list_topics(topic, 10).topics[topic].partitions
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], 10)
        return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in found}
    finally:
        consumer.close()


def readable_after(kafka: str, positions: dict[Key, int], timeout: float = 30.0) -> int:
    """How many committed records there are at or past `positions` (read_committed)."""
    return sum(
        1 for _ in reader.read_to_end(Settings(kafka=kafka), positions, idle_timeout=timeout)
    )


def partitions_of(kafka: str, topics: Iterable[str]) -> set[Key]:
    return set(end_offsets(kafka, topics))


def assigned(kafka: str, group: str, instance_id: str) -> set[Key]:
    """The partitions the group's static member `instance_id` owns, as the broker sees it."""
    admin = AdminClient({"bootstrap.servers": kafka})
    (description,) = [f.result(10) for f in admin.describe_consumer_groups([group]).values()]
    return {
        (tp.topic, tp.partition)
        for member in description.members
        if member.group_instance_id == instance_id
        for tp in member.assignment.topic_partitions
    }


def wait_ready(run_dir: Path, name: str, proc: subprocess.Popen, instance: str = "0") -> None:
    """Until `proc` wrote its ready file (after taking its partitions and restoring them; for a
    transactional processor, after fencing the instance it replaces, whose offsets are final)."""
    ready = run_dir / f"{name}-{instance}.ready"

    def live() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        return ready.exists() and ready.read_text() == str(proc.pid)

    wait_until(live, 120, f"{name} to go live")


def kill_with_unread_input(
    kafka: str,
    proc: subprocess.Popen,
    *,
    progress: Callable[[], int],
    inputs: Callable[[], set[Key]],
    feed: Callable[[set[Key]], object],
    timeout: float = 90.0,
) -> Kill:
    """Feed `proc` input, SIGKILL it once it has made progress on it, while committed input it
    has not read waits on its input partitions.

    `progress` is the processor's own measure of what it has applied (e.g. the sum of its
    committed offsets); `inputs` names the input partitions it reads; `feed(partitions)` appends
    more input, some of it on those partitions. Progress is counted from before the first feed,
    so a processor that finished its earlier input before this call still has work to show."""
    since = progress()
    feed(inputs())  # work for it, appended after `since` was read

    def working() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the processor exited with {proc.returncode}")
        return progress() > since

    try:
        wait_until(working, timeout, "the processor to work through its input", every=0.05)
        pause(proc)
        moved = progress() - since
        mine = inputs()
        assert mine, "the paused processor owns no input partition"
        held = {k: v for k, v in end_offsets(kafka, {t for t, _ in mine}).items() if k in mine}
        feed(mine)  # past `held`: it cannot have fetched any of it
        unread = wait_until(
            lambda: readable_after(kafka, held), timeout, "input the paused processor cannot read"
        )
    finally:
        proc.kill()  # SIGKILL, paused or not: no goodbye
        proc.wait(30)
    return Kill(moved, unread)
