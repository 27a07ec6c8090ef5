"""`python -m infra status`'s figures: what the operator dashboard shows (services/common/
figures.py), as rich tables in the terminal, from two collector samples a second apart."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table

from services.common.collector import PROJECTED, Collector
from services.common.config import Settings
from services.common.figures import figures


def collect(settings: Settings, gap: float = 1.0) -> dict[str, Any]:
    collector = Collector(settings)
    try:
        before = collector.sample()
        time.sleep(gap)
        return figures(before, collector.sample(), PROJECTED)
    finally:
        collector.close()


def _n(value: object, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(title: str, columns: list[str], rows: list[list[object]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 or column == "topic" else "right")
    for row in rows:
        table.add_row(*(_n(v) for v in row))
    return table


def tables(f: dict[str, Any]) -> list[Table]:
    gateway = f["gateway"] or {}
    orders, replies = gateway.get("orders", []), gateway.get("replies", [])
    return [
        _table(
            f"Records per topic (over {f['seconds']:.1f} s)",
            ["topic", "partitions", "records/s", "end offset"],
            [[t["topic"], t["partitions"], t["per_second"], t["end"]] for t in f["topics"]],
        ),
        _table(
            "Consumer lag (processors)",
            ["group", "topic", "partition", "committed", "end", "lag"],
            [
                [r["group"], r["topic"], r["partition"], r["committed"], r["end"], r["lag"]]
                for r in f["consumer_lag"]
            ],
        ),
        _table(
            "Projection lag",
            ["topic", "partition", "applied", "end", "lag"],
            [
                [r["topic"], r["partition"], r["applied"], r["end"], r["lag"]]
                for r in f["projection_lag"]
            ],
        ),
        _table(
            "Transaction commits",
            ["service", "commits/s", "mean ms", "p99 ms", "total"],
            [
                [r["service"], r["per_second"], r["mean_ms"], r["p99_ms"], int(r["total"])]
                for r in f["commits"]
            ],
        ),
        _table(
            "Decisions by type",
            ["type", "per second", "total"],
            [[r["type"], r["per_second"], int(r["total"])] for r in f["decisions"]],
        ),
        _table(
            "Gateway",
            ["orders from / replies", "per second", "total"],
            [[f"orders {r['surface']}", r["per_second"], int(r["total"])] for r in orders]
            + [[f"reply {r['outcome']}", r["per_second"], int(r["total"])] for r in replies]
            + [
                ["decision latency p50 ms", gateway.get("decision_p50_ms"), None],
                ["decision latency p99 ms", gateway.get("decision_p99_ms"), None],
            ],
        ),
        _table(
            "Totals",
            ["figure", "value"],
            [["open orders", f["open_orders"]], ["accounts", f["accounts"]]]
            + [[f"metrics {s['service']}", s["metrics"]] for s in f["services"]],
        ),
    ]


def show(settings: Settings | None = None, console: Console | None = None) -> int:
    settings = settings or Settings()
    # a pipe gets wide tables too: rich would cut them to 80 columns
    console = console or Console(width=None if Console().is_terminal else 120)
    try:
        found = collect(settings)
    except Exception as exc:  # Kafka down, the spec unreadable: say so, status still answers
        console.print(f"figures: not available ({type(exc).__name__}: {exc})")
        return 1
    for table in tables(found):
        console.print(table)
    return 0
