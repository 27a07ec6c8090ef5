"""Random traffic clients on the private channel and five replicas of the books (two L3 from
market.events on Kafka, three L2 from the public channel; one of each loses a message on purpose)
ending with checksums equal to the matcher's at the same sequence (docs/channels.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from services.common.config import ROOT
from services.matcher.service import checksum_every
from tests.support import run_cli, settings_env

from .channel_client import LineClient, report

pytestmark = pytest.mark.e2e
CLIENTS, ORDERS, SEED = 50, 20, 16
IDLE = "8"  # a replica stops after this many seconds without news


def replica(system, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services.replica", *args, "--idle", IDLE],
        env=settings_env(system.settings, PYTHONPATH=str(ROOT)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def pad_to_checksum(system) -> int:
    """Place and cancel a far-away bid until the tape reaches a checksum; its sequence."""
    every = checksum_every()
    feed, trader = LineClient(system.public_port), LineClient(system.private_port)
    try:
        assert feed.recv()["type"] == "snapshot"
        order_id, resting, latest = 0, None, -1
        while latest % every:
            if resting is None:
                order_id += 1
                trader.send(
                    {"message": "createOrder", "orderId": order_id, "side": "BUY",
                     "price": 0.01, "quantity": 1}
                )  # fmt: skip
                assert trader.until(report)["report"] == "NEW"
                resting = order_id
            else:
                trader.send({"message": "cancelOrder", "orderId": resting})
                assert trader.until(report)["report"] == "CANCELED"
                resting = None
            moved = feed.until(lambda m: m.get("type") == "orderbook" and m["price"] == 0.01)
            latest = moved["bookSeq"]
        crc = feed.until(lambda m: m.get("type") == "checksum")
        assert crc["bookSeq"] == latest
        return latest
    finally:
        feed.close()
        trader.close()


def test_random_clients_and_five_replicas_end_equal_to_the_matcher(system):
    began = time.monotonic()
    replicas = [
        replica(system, "l3", "--symbol", "WOOD"),
        replica(system, "l3", "--symbol", "WOOD", "--lose", "40"),
        replica(system, "l2", "--port", str(system.public_port)),
        replica(system, "l2", "--port", str(system.public_port), "--lose", "30"),
        replica(system, "l2", "--port", str(system.public_port)),
    ]
    try:
        clients = run_cli(
            system.settings,
            "services.clients",
            *("-n", str(CLIENTS), "--orders", str(ORDERS), "--seed", str(SEED)),
            *("--port", str(system.private_port)),
        )
        assert clients.returncode == 0, clients.stdout + clients.stderr
        print(clients.stdout)
        result = json.loads(clients.stdout.strip().splitlines()[-1])
        assert result["orders"] == result["accepted"] > 0 and result["fills"] > 0
        final = pad_to_checksum(system)
        summaries = []
        for proc in replicas:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, out + err[-2000:]
            summaries.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in replicas:
            if proc.poll() is None:
                proc.kill()
    for summary in summaries:
        print(json.dumps(summary))
        wood = summary["books"]["WOOD"]
        assert wood["mismatches"] == 0, summary
        assert wood["last_check"] == {
            "seq": final,
            "matcher": wood["last_check"]["matcher"],
            "ours": wood["checksum"],
            "equal": True,
        }, summary
        assert wood["checks"] >= 1
    lossy = [summaries[1], summaries[3]]
    assert all(s["gaps"] >= 1 and s["resyncs"] >= 1 for s in lossy), lossy
    assert len({s["books"]["WOOD"]["checksum"] for s in summaries}) == 1
    print(f"clients + replicas: {time.monotonic() - began:.1f} s")


def test_matcher_verify_still_holds_with_checksums(system):
    result = run_cli(system.settings, "services.matcher", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DIFFERENCES" not in result.stdout
