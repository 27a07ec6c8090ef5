"""The bench harness's own parts: the CPU meter reads /proc, the e2e report renders every step."""

from __future__ import annotations

import asyncio
import importlib
import os

from bench import e2e_bench, e2e_report
from bench.cpu import CpuMeter, metered, tree_seconds


def test_the_meter_sees_this_process_spend_cpu():
    meter = CpuMeter({"me": os.getpid()}, {"tree": os.getpid()})

    async def busy():
        sum(i * i for i in range(2_000_000))

    found = asyncio.run(metered(meter, busy()))
    # the tree adds the reaped children's seconds to both samples: after a suite's many
    # subprocesses that sum is large, and the difference of two large floats can come out a
    # few 1e-13 under the process's own (seen: 0.09999999999990905 against ...99432)
    assert found.spent["me"] > 0 and found.spent["tree"] >= found.spent["me"] - 1e-9
    assert set(found.vm) == {"busy", "steal", "steal_peak"}
    assert tree_seconds(os.getpid()) > 0


def step(rate: int, ok: bool) -> dict:
    latency = {"p50": 10.0, "p99": 20.0, "p99.9": 30.0, "max": 40.0}
    return {
        "offered_per_s": rate,
        "achieved_per_s": rate,
        "latency_ms": latency,
        "projection_lag_ms": {"samples": 1, "p50": 5.0, "p99": 6.0, "max": 7.0},
        "vm_cores": {"busy": 1.0, "steal": 0.2, "steal_peak": 0.9},
        "cpu_us_per_order": {"ledger": 500.0, "kafka": 900.0},
        "stages_ms": None,
        "sustained": ok,
    }


def test_the_report_has_a_row_per_step_with_its_steal():
    surfaces = {"xml": [step(25, True), step(50, False)], "http": [step(25, False)]}
    figures = {
        "headline": e2e_bench.best_surface(surfaces),
        "reference_step": {"xml": step(50, False)},
        "max_sustained_per_s": {"xml": 25, "http": 0},
        "kafka_ceiling_records_per_s": 50_000,
        "vm_steal_cores": e2e_report.steal_over(surfaces),
        "steps": surfaces,
    }
    text = e2e_report.summary(figures)
    assert "xml 25/s, http 0/s" in text
    assert text.count("| 1.0/0.2 (0.9) |") == 3
    assert "**Headline: 25 orders/s sustained (xml), p99 20.0 ms, 1400.0 µs" in text
    assert "- xml @ 50/s (achieved 50/s, p99 20.0 ms): all 1400.0; kafka 900.0, ledger" in text
    assert "- xml @ 25/s (achieved 25/s, p99 20.0 ms): all 1400.0; kafka 900.0, ledger" in text
    assert "Kafka ceiling 50000 records/s." in text
    alone = e2e_report.summary(figures | {"kafka_ceiling_records_per_s": None})
    assert "Kafka ceiling not measured in this run." in alone and "None" not in alone


def test_the_headline_is_the_best_sustained_surface_or_none():
    faster = step(100, True) | {"cpu_us_per_order": {"kafka": 100.0}}
    surfaces = {"xml (split)": [step(25, True)], "xml (engine)": [step(25, True), faster]}
    assert e2e_bench.best_surface(surfaces) == {
        "orders_per_s": 100,
        "p99_ms": 20.0,
        "cpu_us_per_order": 100.0,
        "surface": "xml (engine)",
    }
    assert e2e_bench.best_surface({"xml": [step(25, False)]})["orders_per_s"] == 0


def test_the_benches_measure_every_service_the_procfile_runs():
    """CPU per order "over every process" holds only if the benches start what `make up` does."""
    from infra.local import ROOT
    from infra.stack import EVERY_SERVICE

    lines = (ROOT / "Procfile").read_text().splitlines()
    procfile = {line.split(":")[0] for line in lines if line and not line.startswith("#")}
    assert set(EVERY_SERVICE) == procfile


def test_every_suite_of_make_bench_imports_and_has_its_entry_points():
    """`make bench` went red on an import no test made (a service's helper renamed)."""
    from bench.__main__ import SUITES

    for name in SUITES:
        module = importlib.import_module(f"bench.{name}")
        assert callable(module.run) and callable(module.summary), name
