"""The end-to-end suite's report: its markdown (a table per step) and its latency plot.

Each step's row carries the cores the VM was busy and the cores the hypervisor stole, on average
and at most in a quarter second: a failed step with much steal says as much about the host as
about Marketlog, and the report leaves that judgement to its reader.
"""

from __future__ import annotations

from pathlib import Path

from bench import stages
from bench.sweep import P99_LIMIT_MS, best


def percentile(values: list[float], p: float) -> float | None:
    return round(values[min(len(values) - 1, int(len(values) * p / 100))], 2) if values else None


def steal_over(surfaces: dict) -> dict:
    """The cores stolen during the steps: the median step and the worst."""
    steals = sorted(s["vm_cores"]["steal"] for steps in surfaces.values() for s in steps)
    return {"median": percentile(steals, 50), "max": steals[-1] if steals else None}


def _ceiling(records_per_s: float | None) -> str:
    if records_per_s is None:  # e2e_bench run alone: kafka_ceiling is another suite
        return "; Kafka ceiling not measured in this run."
    return f"; Kafka ceiling {records_per_s} records/s."


def summary(figures: dict) -> str:
    steal = figures.get("vm_steal_cores") or {}
    top = figures["headline"]
    lines = [
        f"**Headline: {top['orders_per_s']} orders/s sustained ({top['surface']}), p99 "
        f"{top['p99_ms']} ms, {top['cpu_us_per_order']} µs of CPU per order over every "
        "process.**",
        "",
        f"Max sustained rate (p99 < {P99_LIMIT_MS:.0f} ms, no backlog): "
        + ", ".join(f"{s} {r}/s" for s, r in figures["max_sustained_per_s"].items())
        + _ceiling(figures["kafka_ceiling_records_per_s"])
        + (
            f" VM steal per step: median {steal['median']}, worst {steal['max']} cores."
            if steal.get("median") is not None
            else ""
        ),
        "",
        "| surface | offered/s | achieved/s | p50 ms | p99 ms | p99.9 ms | max ms | "
        "projection lag p50/p99 ms | VM busy/steal (peak) cores | sustained |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for surface, steps in figures["steps"].items():
        lines += [_row(surface, s) for s in steps]
    lines += ["", "CPU µs per order at the reference rate (the same load every run):", ""]
    for surface, step in figures["reference_step"].items():
        lines.append(_cpu_line(surface, step))
    lines += ["", "Idle (the stack up, no orders), cores:", ""]
    for topology, idle in figures.get("idle", {}).items():
        per = ", ".join(f"{k} {v}" for k, v in sorted(idle["cores"].items(), key=lambda kv: -kv[1]))
        lines.append(f"- {topology}: all {idle['all']}; {per}")
    lines += ["", "CPU µs per order at the highest sustained step:", ""]
    for surface, steps in figures["steps"].items():
        lines.append(_cpu_line(surface, best(steps) or steps[0]))
    lines += ["", "Where the time goes (ms, from the log's timestamps: bench/stages.py):", ""]
    for surface, steps in figures["steps"].items():
        failed = next((s for s in steps if not s["sustained"]), None)
        for step in (best(steps), failed):
            if step and step.get("stages_ms"):
                lines.append(
                    f"- {surface} @ {step['offered_per_s']}/s: "
                    + stages.describe(step["stages_ms"])
                )
    if figures.get("plot"):
        lines += ["", f"![latency vs offered rate]({figures['plot']})"]
    return "\n".join(lines)


def _cpu_line(surface: str, step: dict) -> str:
    per_order = sorted(step["cpu_us_per_order"].items(), key=lambda kv: -kv[1])
    total = round(sum(v for _, v in per_order), 1)
    return (
        f"- {surface} @ {step['offered_per_s']}/s (achieved {step['achieved_per_s']}/s, p99 "
        f"{step['latency_ms']['p99']} ms): all {total}; "
        + ", ".join(f"{k} {v}" for k, v in per_order)
    )


def _row(surface: str, s: dict) -> str:
    lat, lag, vm = s["latency_ms"], s["projection_lag_ms"], s["vm_cores"]
    return (
        f"| {surface} | {s['offered_per_s']} | {s['achieved_per_s']} | "
        f"{lat['p50']} | {lat['p99']} | {lat['p99.9']} | {lat['max']} | "
        f"{lag['p50']}/{lag['p99']} | {vm['busy']}/{vm['steal']} ({vm['steal_peak']}) | "
        f"{s['sustained']} |"
    )


def plot(surfaces: dict, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(surfaces), figsize=(4 * len(surfaces), 4.5), sharey=True, squeeze=False
    )
    for ax, (surface, steps) in zip(axes[0], surfaces.items(), strict=True):
        rates = [s["offered_per_s"] for s in steps]
        for key in ("p50", "p99", "p99.9", "max"):
            ax.plot(rates, [s["latency_ms"][key] for s in steps], marker="o", label=key)
        ax.axhline(P99_LIMIT_MS, color="grey", linestyle="--", linewidth=0.8)
        ax.set(
            title=f"{surface}: latency vs offered rate",
            xlabel="offered orders/s",
            ylabel="ms (due time -> decision)",
            yscale="log",
        )
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
