"""The forked snapshot child: its result once, a failure reported as none, a cancel that ends it."""

from __future__ import annotations

import os
import time

from services.common.snapshotter import Snapshotter


def test_the_child_sees_the_state_as_of_the_fork():
    state = {"orders": [1, 2, 3]}
    snapshotter = Snapshotter()
    snapshotter.start(lambda: (os.getpid(), list(state["orders"])))
    state["orders"].append(4)  # the parent goes on; the child's copy does not change
    pid, orders = snapshotter.wait(30)
    assert orders == [1, 2, 3] and pid != os.getpid()
    assert not snapshotter.busy and snapshotter.poll() is None  # handed over once


def test_a_failing_child_gives_no_snapshot_and_the_next_one_runs(capfd):
    snapshotter = Snapshotter()
    snapshotter.start(lambda: 1 // 0)
    assert snapshotter.wait(30) is None and not snapshotter.busy
    assert "ZeroDivisionError" in capfd.readouterr().err
    snapshotter.start(lambda: "next")
    assert snapshotter.wait(30) == "next"


def test_poll_does_not_wait_and_cancel_ends_the_child(tmp_path):
    gate = tmp_path / "gate"

    def held() -> str:
        while not gate.exists():
            time.sleep(0.01)
        return "done"

    snapshotter = Snapshotter()
    snapshotter.start(held)
    started = time.monotonic()
    assert snapshotter.poll() is None and snapshotter.busy
    assert time.monotonic() - started < 1.0
    pid = snapshotter._pid
    snapshotter.cancel()
    assert not snapshotter.busy
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive


def test_a_child_running_too_long_is_ended(tmp_path, monkeypatch):
    gate = tmp_path / "gate"  # never made: the child would wait for good
    snapshotter = Snapshotter()
    snapshotter.start(lambda: gate.exists() or time.sleep(3600))
    monkeypatch.setattr("services.common.snapshotter.CHILD_SECONDS", 0.0)
    assert snapshotter.poll() is None and not snapshotter.busy
