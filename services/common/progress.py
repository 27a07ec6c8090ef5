"""Progress bars for the long commands (verify, rebuild), on a terminal only: when stderr is not
a TTY (logs, pipes, tests) nothing is drawn and the total is never asked for, so a bar costs a
non-interactive run nothing."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
EVERY = 1000  # records between redraw requests: rich redraws at most 10 times a second anyway


def shown() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def counter(description: str, total: Callable[[], int | None]) -> Iterator[Callable[[int], None]]:
    """advance(n) for a bar of `total()` (asked only on a terminal); a no-op elsewhere."""
    if not shown():
        yield lambda n: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task(description, total=total())
        yield lambda n: bar.advance(task, n)
        done = bar.tasks[0].completed
        bar.update(task, total=done, completed=done)  # offsets overcount records: end full


def reading(records: Iterable[T], description: str, total: Callable[[], int | None]) -> Iterator[T]:
    """`records`, unchanged, with a bar. `total` may overcount (offsets include transaction
    markers): the bar ends full when the records do."""
    if not shown():
        yield from records
        return
    with counter(description, total) as advance:
        pending = 0
        for record in records:
            yield record
            pending += 1
            if pending == EVERY:
                advance(pending)
                pending = 0
        advance(pending)
