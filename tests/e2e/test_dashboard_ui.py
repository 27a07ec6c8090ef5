"""The operator dashboard in a real Chromium against the whole running system, and `python -m
infra status` printing the same figures: orders flow over XML while each looks, so the page must
show records per second above zero, decisions by type, open orders and accounts, and the lag of
every partition of each processor's input and of the projector's. The page's screenshot is
docs/screenshots/dashboard.png (README, "Operator dashboard")."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from infra.stack import ROOT

from .browser import SCREENSHOTS
from .xml_client import XmlClient, fresh_account, fresh_symbol, wait_for

pytestmark = pytest.mark.e2e

TRAFFIC_SECONDS = 120.0  # the longest the order flow runs, whatever a test does


class Traffic:
    """A buyer and a seller trading one share at a time over XML, beside one resting bid that
    never fills (an open order), until stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.orders = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)

    def _run(self) -> None:
        try:
            self._trade()
        except BaseException as exc:  # the test's waits fail with it
            self.error = exc

    def _trade(self) -> None:
        buyer, seller, symbol = fresh_account(), fresh_account(), fresh_symbol("D")
        with XmlClient(self.port) as client:
            created = client.send(
                f'<create><account id="{buyer}" balance="100000000"/>'
                f'<account id="{seller}" balance="0"/>'
                f'<symbol sym="{symbol}"><account id="{seller}">1000000</account></symbol>'
                "</create>".encode()
            )
            assert created.find("error") is None, created
            opened = client.send(
                f'<transactions id="{buyer}"><order sym="{symbol}" amount="1" limit="1"/>'
                "</transactions>".encode()
            )
            assert opened.find("opened") is not None
            deadline = time.monotonic() + TRAFFIC_SECONDS
            while not self.stop.is_set() and time.monotonic() < deadline:
                for account, amount in ((seller, "-1"), (buyer, "1")):
                    client.send(
                        f'<transactions id="{account}"><order sym="{symbol}" amount="{amount}"'
                        ' limit="10"/></transactions>'.encode()
                    )
                    self.orders += 1
                time.sleep(0.02)


@pytest.fixture
def traffic(system) -> Iterator[Traffic]:
    with Traffic(system.xml_port) as flow:
        yield flow
    assert flow.error is None, flow.error


def input_partitions(system) -> int:
    return system.settings.partitions


def processor_groups(system) -> tuple[str, ...]:
    engine = system.procs.env.get("MARKETLOG_TOPOLOGY") == "engine"
    return ("engine",) if engine else ("ledger", "matcher")


def test_dashboard_data_needs_the_admin_key(system):
    with httpx.Client(base_url=system.http_url, timeout=30) as http:
        page_answer = http.get("/dashboard")
        assert page_answer.status_code == 200 and "operator dashboard" in page_answer.text
        assert http.get("/dashboard/dashboard.js").status_code == 200
        assert http.get("/dashboard/nothing.js").status_code == 404
        assert http.get("/dashboard/data").status_code == 401
        wrong = http.get("/dashboard/data", headers={"Authorization": "Bearer not-a-key"})
        assert wrong.status_code == 401
        made = http.post(
            "/accounts",
            json={"balance": "10"},
            headers={"Authorization": f"Bearer {system.admin_key}"},
        )
        account_key = made.json()["api_key"]
        refused = http.get("/dashboard/data", headers={"Authorization": f"Bearer {account_key}"})
        assert refused.status_code == 403
        assert "/dashboard" not in http.get("/openapi.json").text


def test_dashboard_shows_throughput_decisions_and_lag_per_partition(system, traffic, page):
    page.goto(f"{system.http_url}/dashboard")
    page.fill("#key", system.admin_key)
    page.click("#connect")
    # figures arrive every second: wait (bounded) until the flow shows in them
    page.wait_for_function(
        """() => {
            const value = (id) => parseFloat(
                document.getElementById(id).textContent.replace(/,/g, ''));
            const kinds = [...document.querySelectorAll('#decisions tbody tr td:first-child')]
                .map((td) => td.textContent);
            return value('total-rate') > 0 && value('open-orders') > 0
                && kinds.includes('OrderAccepted') && kinds.includes('Trade');
        }""",
        timeout=60_000,
    )
    assert traffic.error is None, traffic.error
    assert page.is_hidden("#login") and page.is_visible("#figures")
    topics = rows(page, "topics")
    assert any(r[0] == "ledger.commands" and number(r[2]) > 0 for r in topics), topics
    decisions = {r[0]: number(r[1]) for r in rows(page, "decisions")}
    assert decisions["OrderAccepted"] > 0 or decisions["Trade"] > 0, decisions

    partitions = input_partitions(system)
    lag = rows(page, "consumer-lag")
    groups = processor_groups(system)
    for group in groups:
        mine = sorted(int(r[1]) for r in lag if r[0] == group)
        assert mine == list(range(partitions)), lag
    projected = rows(page, "projection-lag")
    for topic in ("account.events", "market.events"):
        assert sorted(int(r[1]) for r in projected if r[0] == topic) == list(range(partitions))
    assert number(page.text_content("#accounts")) >= 2
    gateway_orders = {r[0]: number(r[2]) for r in rows(page, "orders")}
    assert gateway_orders.get("xml", 0) > 0, gateway_orders
    commits = {r[0] for r in rows(page, "commits")}
    assert set(groups) <= commits and "projector" in commits, commits
    assert all(r[1] == "up" for r in rows(page, "services")), rows(page, "services")

    # a few more refreshes, so the records/s line has a history to draw
    seen = int(page.get_attribute("body", "data-refreshes"))
    page.wait_for_function(f"() => Number(document.body.dataset.refreshes) >= {seen + 4}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)


def test_infra_status_prints_the_same_figures(system, traffic):
    env = dict(system.procs.env)
    wait_for(lambda: traffic.orders > 0 or traffic.error, 30)  # its resting bid is answered
    deadline = time.monotonic() + 60
    while True:  # the flow must be under way during the status's one-second window
        status = subprocess.run(
            [sys.executable, "-m", "infra", "status"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        out = status.stdout
        table = table_rows(out, "Records per topic")
        ledger = [r for r in table if r and r[0] == "ledger.commands"]
        flowing = ledger and number(ledger[0][2]) > 0
        totals = {r[0]: r[1] for r in table_rows(out, "Totals")}
        if (flowing and number(totals["open orders"]) > 0) or time.monotonic() > deadline:
            break
    assert ledger and number(ledger[0][2]) > 0, out
    partitions = input_partitions(system)
    lag = table_rows(out, "Consumer lag")
    groups = processor_groups(system)
    for group in groups:
        assert sorted(int(r[2]) for r in lag if r[0] == group) == list(range(partitions)), out
    projected = table_rows(out, "Projection lag")
    assert sorted(int(r[1]) for r in projected if r[0] == "account.events") == list(
        range(partitions)
    )
    decisions = {r[0] for r in table_rows(out, "Decisions by type")}
    assert {"OrderAccepted", "Trade"} <= decisions, out
    assert number(totals["open orders"]) > 0 and number(totals["accounts"]) >= 2, out
    gateway = {r[0]: r[1] for r in table_rows(out, "Gateway")}
    assert "orders xml" in gateway, out


# -- reading what was shown ----------------------------------------------------------------------
def rows(shown, table: str) -> list[list[str]]:
    return shown.eval_on_selector_all(
        f"#{table} tbody tr",
        "trs => trs.map(tr => [...tr.children].map(td => td.textContent))",
    )


def number(text: str) -> float:
    return float(text.replace(",", "").strip() or "nan")


def table_rows(out: str, title: str) -> list[list[str]]:
    """The body rows of the rich table whose title starts with `title`, cells stripped."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(title))
    found, rules = [], 0
    for line in lines[start + 1 :]:
        if re.match(r"^[┏┡└]", line.strip()):
            rules += 1
            if line.strip().startswith("└"):
                break
            continue
        if rules >= 2 and line.strip().startswith("│"):
            found.append([cell.strip() for cell in line.strip().strip("│").split("│")])
    return found
