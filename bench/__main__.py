"""`python -m bench [suite ...]`: run suites, write bench/results/<date>T<HHMM>-<host>.json.

A suite is a module ``bench/<name>.py`` with ``run(env: BenchEnv) -> dict`` returning its figures
(plain JSON values; rates in records per second, latencies in milliseconds, each with the inputs
that produced it), and optionally ``summary(figures) -> str``, its markdown for the run's report
(bench/results/<date>T<HHMM>-<host>.md). Every suite of one invocation shares one broker and
database (fresh topics each) and sees the figures of the suites before it (``env.results``), so
ratios are taken within one run. Speed is only ever measured here, never asserted by tests.
"""

from __future__ import annotations

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

SUITES = ["kafka_ceiling", "matcher_bench", "ledger_bench", "projector_bench", "e2e_bench"]
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[
        0
    ]
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "java": java,
    }


def main(names: list[str]) -> int:
    selected = [s for s in SUITES if not names or s in names]
    now = dt.datetime.now(dt.UTC)
    results = {"date": now.isoformat(timespec="seconds"), "machine": machine(), "suites": {}}
    RESULTS.mkdir(exist_ok=True)
    # the minute too: a later run the same day never overwrites an earlier one
    stem = f"{now:%Y-%m-%dT%H%M}-{socket.gethostname()}" + ("-" + "-".join(names) if names else "")
    report = [f"# Benchmarks {results['date']}", "", f"Machine: `{json.dumps(results['machine'])}`"]
    started_all = time.monotonic()
    with BenchEnv(results["suites"], RESULTS / stem) as env:
        for name in selected:
            module = importlib.import_module(f"bench.{name}")
            started = time.monotonic()
            print(f"== {name}", flush=True)
            figures = module.run(env)
            figures["suite_seconds"] = round(time.monotonic() - started, 1)
            results["suites"][name] = figures
            print(json.dumps(figures, indent=1), flush=True)
            if hasattr(module, "summary"):
                report += ["", f"## {name}", "", module.summary(figures)]
    results["total_seconds"] = round(time.monotonic() - started_all, 1)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text("\n".join(report) + "\n")
    print(f"results: {RESULTS / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
