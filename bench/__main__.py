"""`python -m bench [--quick] [suite ...]` (`make bench`): run suites, keep the latest results.

A suite is a module ``bench/<name>.py`` with ``run(env: BenchEnv) -> dict`` returning its figures
(plain JSON values; rates in records per second, latencies in milliseconds, each with the inputs
that produced it) and ``summary(figures) -> str``, its markdown. Every suite of one invocation
shares one broker and database (fresh topics each) and sees the figures of the suites before it
(``env.results``), so ratios are taken within one run. Each suite's result replaces its previous
one: ``bench/results/<suite>.json`` (date, machine, figures) and ``<suite>.md``; the history is a
table in docs/performance.md (and in git). ``--quick`` (or MARKETLOG_BENCH_QUICK=1) runs small
sizes and short steps into ``bench/results/quick/``: it proves the harness, it measures little.
Speed is only ever measured here, never asserted by tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.env import BenchEnv

SUITES = [
    "kafka_ceiling",
    "matcher_bench",
    "ledger_bench",
    "projector_bench",
    "e2e_bench",
    "daytrading_bench",
    "channel_bench",
    "analytics_bench",
]
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = int(next(ln.split()[1] for ln in meminfo if ln.startswith("MemTotal")))
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    return {
        "host": socket.gethostname(),
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "java": java.splitlines()[0] if java else None,
    }


def record(out: Path, name: str, result: dict, markdown: str) -> None:
    """Replace the suite's previous result (written aside first: never half a file)."""
    for suffix, text in ((".json", json.dumps(result, indent=1) + "\n"), (".md", markdown)):
        tmp = out / f"{name}{suffix}.tmp"
        tmp.write_text(text)
        tmp.replace(out / f"{name}{suffix}")


def run_suite(env: BenchEnv, name: str, host: dict) -> None:
    module = importlib.import_module(f"bench.{name}")
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    print(f"== {name}", flush=True)
    started = time.monotonic()
    figures = module.run(env)
    seconds = round(time.monotonic() - started, 1)
    env.results[name] = figures
    print(json.dumps(figures, indent=1), flush=True)
    result = {"suite": name, "date": date, "quick": env.quick, "seconds": seconds}
    if "headline" in figures:  # the run's one figure, where a reader looks first
        result["headline"] = figures["headline"]
    result |= {"machine": host, "figures": figures}
    header = f"# {name}: {date}{' (quick)' if env.quick else ''}, {seconds} s"
    markdown = f"{header}\n\nMachine: `{json.dumps(host)}`\n\n{module.summary(figures)}\n"
    record(env.out, name, result, markdown)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("suites", nargs="*", metavar="suite", help=", ".join(SUITES))
    quick = bool(os.environ.get("MARKETLOG_BENCH_QUICK"))
    parser.add_argument("--quick", action="store_true", default=quick, help="small and short")
    args = parser.parse_args(argv)
    if unknown := set(args.suites) - set(SUITES):
        parser.error(f"unknown suites: {', '.join(sorted(unknown))}")
    out = RESULTS / "quick" if args.quick else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    host = machine()
    with BenchEnv(out, quick=args.quick) as env:
        for name in [s for s in SUITES if not args.suites or s in args.suites]:
            run_suite(env, name, host)
    print(f"results: {out}/<suite>.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
