"""A minimal stateful core for testing the exactly-once loop: a running total per partition.

Each input value is an integer; each output is "count,total" after applying it, on the same
partition. A lost, repeated or wrongly restored record shows up as a wrong count or total.
Run as a process: ``python -m tests.integration.toy_processor`` (settings from the environment).
"""

from __future__ import annotations

import json
import logging
import os
import time

from services.common.config import Settings
from services.common.processor import Output, Processor


class RunningTotal:
    def __init__(self, out_topic: str, partition: int, count: int = 0, total: int = 0) -> None:
        self.out_topic, self.partition, self.count, self.total = out_topic, partition, count, total

    def apply(self, value: bytes) -> list[Output]:
        self.count += 1
        self.total += int(value)
        return [
            Output(
                self.out_topic,
                str(self.count),
                f"{self.count},{self.total}".encode(),
                self.partition,
            )
        ]

    gate = ""  # a file the snapshot waits for (run in the forked child): tests hold it there

    def snapshot(self) -> bytes:
        while self.gate and not os.path.exists(self.gate):
            time.sleep(0.01)
        return json.dumps([self.count, self.total]).encode()


class ToyCore:
    name = "toy"

    def __init__(self, settings: Settings) -> None:
        self.input_topic = settings.topic("toy.in")
        self.snapshot_topic = settings.topic("toy.snapshots")
        self.output_topic = settings.topic("toy.out")

    def fresh(self, partition: int, partitions: int) -> RunningTotal:
        return RunningTotal(self.output_topic, partition)

    def restore(self, partition: int, partitions: int, state: bytes) -> RunningTotal:
        count, total = json.loads(state)
        return RunningTotal(self.output_topic, partition, count, total)


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    settings = Settings()
    Processor(
        ToyCore(settings),
        settings,
        batch_records=int(os.environ.get("TOY_BATCH", "200")),
        snapshot_records=int(os.environ.get("TOY_SNAPSHOT_RECORDS", "300")),
    ).run()


if __name__ == "__main__":
    main()
