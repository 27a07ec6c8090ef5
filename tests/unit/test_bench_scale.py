"""The scale curve's figures (bench/scale.py): CPU by process kind, per instance, and the
on-paper projection with each process on a core of its own; the sustained rule's own bound."""

from __future__ import annotations

from bench.scale import PROCESSORS, by_kind, kind_of, per_instance, projection
from bench.sweep import sustained


def test_processes_are_counted_by_kind():
    assert [kind_of(p) for p in ("kafka-3", "ledger@2", "gateway", "postgres")] == [
        "broker",
        "ledger",
        "gateway",
        "postgres",
    ]
    kinds = by_kind({"kafka-1": 100, "kafka-2": 50, "ledger@0": 30, "ledger@1": 10, "gateway": 5})
    assert (kinds["broker"], kinds["ledger"], kinds["gateway"], kinds["matcher"]) == (150, 40, 5, 0)


def test_an_instance_carries_its_share_a_broker_a_third():
    kinds = {"broker": 300.0, "ledger": 90.0, "matcher": 60.0, "projector": 30.0}
    assert per_instance(kinds, 3) == {"ledger": 30, "matcher": 20, "projector": 10, "broker": 100}


def test_processors_scale_with_instances_until_a_single_process_bounds_them():
    kinds = {"broker": 600.0, "gateway": 250.0, "postgres": 100.0}
    kinds |= {"ledger": 1000.0, "matcher": 500.0, "projector": 800.0}
    rows = projection(kinds, partitions=6)
    assert [r["instances"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["orders_per_s"]["ledger"] == 1000 and rows[0]["bound"] == "ledger"
    assert rows[2]["orders_per_s"]["projector"] == 3750 and rows[2]["bound"] == "ledger"
    # from 5 instances on the single gateway (4,000/s) is the bound; three brokers carry 5,000/s
    assert rows[4]["bound"] == "gateway" and rows[5]["orders_per_s"]["broker"] == 5000
    assert {r["orders_per_s"]["gateway"] for r in rows} == {4000}
    assert set(PROCESSORS) < set(rows[0]["orders_per_s"])


def test_the_sustained_rule_takes_a_bound_of_its_own():
    step = {
        "answered": 100,
        "sent": 100,
        "errors": 0,
        "offered_per_s": 100,
        "achieved_per_s": 98.0,
        "latency_ms": {"p99": 600.0},
        "p99_last_third_ms": 550.0,
    }
    assert not sustained(step)  # the e2e suite's 50 ms
    assert sustained(step, 1000.0)
    assert not sustained(step | {"achieved_per_s": 94.0}, 1000.0)
