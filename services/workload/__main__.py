"""python -m services.workload FILE [--host H] [--port P] [--connections N] [--window K]
[--dumplog PATH] [--json PATH] [--timeout S] [--no-progress]

Replays a course workload file against the day-trading line protocol and prints commands/s and
latency percentiles. Exit status 0 when every command got a well-formed answer (error answers
count) and a wanted DUMPLOG arrived, 1 otherwise. docs/daytrading.md, *Workload generator*."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.workload.replay import load, replay


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.workload",
        description="Replay a day-trading workload file over the line protocol.",
    )
    parser.add_argument("file", type=Path, help="a workload file ([N] COMMAND,userid,args lines)")
    parser.add_argument("--host", default=os.environ.get("MARKETLOG_DAYTRADE_HOST") or "127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("MARKETLOG_DAYTRADE_PORT") or 12346)
    )
    parser.add_argument(
        "--connections", type=int, default=0, help="connections shared by the users (0: one each)"
    )
    parser.add_argument(
        "--window", type=int, default=1, help="commands of one user in flight at once (1)"
    )
    parser.add_argument(
        "--dumplog", type=Path, help="write what the admin DUMPLOG returns to this file"
    )
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for any one answer"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.connections < 0 or args.window < 1 or args.timeout <= 0:
        parser.error("--connections must be >= 0, --window >= 1, --timeout > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    try:
        text = args.file.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    plan = load(text, args.dumplog)
    console = Console(stderr=True)
    show = not args.no_progress and console.is_terminal
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
    ) as bar:
        task = bar.add_task(args.file.name, total=plan.total, rate="")
        started = time.perf_counter()

        def progress(done: int) -> None:
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=done, rate=f"{rate:,.0f} commands/s")

        report = asyncio.run(
            replay(
                plan,
                args.host,
                args.port,
                name=args.file.name,
                connections=args.connections,
                window=args.window,
                timeout=args.timeout,
                progress=progress,
            )
        )
    print(report.text())
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return 0 if report.complete else 1


if __name__ == "__main__":
    sys.exit(main())
