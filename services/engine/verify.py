"""The engine's determinism audit: re-run its core over ``ledger.commands`` from offset 0 and
compare what it decides with ``account.events`` and ``market.events``, byte for byte, per key.

``python -m services.engine verify``. A logged stream that is a strict prefix of the re-run is
"behind" (the engine has not caught up), not a difference.
"""

from __future__ import annotations

import sys
from collections import defaultdict

from services.common.config import Settings
from services.common.progress import reading
from services.common.reader import read_topic, total_offsets

from .service import EngineCore

Stream = tuple[str, str]


def _read(settings: Settings, topic: str):
    """Every committed record of topic, with a progress bar on a terminal."""
    return reading(read_topic(settings, topic), topic, lambda: total_offsets(settings, topic))


def verify(settings: Settings) -> tuple[int, list[Stream], list[str]]:
    """(input records, streams behind, differences)."""
    core = EngineCore(settings)
    engine = core.fresh(0, 1)
    expected: dict[Stream, list[bytes]] = defaultdict(list)
    inputs = 0
    for record in _read(settings, core.input_topic):
        for out in engine.apply(record.value()):
            expected[out.topic, out.key].append(out.value)
        inputs += 1
    actual: dict[Stream, list[bytes]] = defaultdict(list)
    for topic in core.output_topics:
        for record in _read(settings, topic):
            actual[topic, record.key().decode()].append(record.value())
    behind, differences = [], []
    for stream in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(stream, []), actual.get(stream, [])
        if got == want:
            continue
        if len(got) < len(want) and want[: len(got)] == got:
            behind.append(stream)
            continue
        at = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), None)
        where = f"record {at}" if at is not None else f"{len(got)} logged, {len(want)} re-run"
        differences.append(f"{stream}: differs at {where}")
    return inputs, behind, differences


def main() -> int:
    inputs, behind, differences = verify(Settings())
    print(f"{inputs} input records")
    for stream in behind:
        print(f"behind: {stream}")
    for line in differences:
        print(f"DIFFERENT: {line}")
    print("ok" if not differences else f"{len(differences)} streams differ")
    return 0 if not differences else 1


if __name__ == "__main__":
    sys.exit(main())
