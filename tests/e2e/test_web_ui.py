"""The traders' web front end (services/gateway/web, docs/web.md) in a real headless Chromium
(Debian's, through Playwright) against the whole running system: log in with an account's key,
place a limit order, see it in the book and in my orders, cancel it, see a trade print when two
accounts cross, see the candle it makes; the day-trading screen: ADD, QUOTE, BUY then COMMIT_BUY
within the countdown, the summary, triggers, DUMPLOG downloaded; API errors shown verbatim.

Every wait is on a condition with a deadline (Playwright's ``expect``). The screenshots in
docs/screenshots/ are written here when MARKETLOG_SCREENSHOTS=1 (tests/e2e/browser.py). The
page's load size and time to first render are printed
(run with ``-s``) and the size is held to a budget."""

from __future__ import annotations

import json
import random
import re
import string
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import httpx
import pytest
from lxml import etree
from playwright.sync_api import Page, expect

from .browser import SCREENSHOTS
from .xml_client import fresh_symbol

pytestmark = pytest.mark.e2e

PAGE_BUDGET = 100_000  # bytes over the wire for the whole page, headers included
expect.set_options(timeout=15_000)  # the whole system answers within that, loaded or not


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def http(system):
    with httpx.Client(base_url=system.http_url, timeout=30) as client:
        yield client


def new_account(http, system, balance: str) -> tuple[str, str]:
    made = http.post("/accounts", json={"balance": balance}, headers=bearer(system.admin_key))
    assert made.status_code == 201, made.text
    return made.json()["account_id"], made.json()["api_key"]


def new_symbol(http, system, holder: str, qty: str) -> str:
    symbol = fresh_symbol("W")
    admin = bearer(system.admin_key)
    assert http.post("/symbols", json={"symbol": symbol}, headers=admin).status_code == 201
    issued = http.post(
        f"/symbols/{symbol}/issue", json={"account_id": holder, "qty": qty}, headers=admin
    )
    assert issued.status_code == 200, issued.text
    return symbol


def watch(tab: Page) -> tuple[list[str], list[str]]:
    """Every URL the page asks for, WebSockets included (the key must be in none), and every
    script error or Content-Security-Policy violation (there must be none)."""
    urls: list[str] = []
    problems: list[str] = []
    tab.on("request", lambda request: urls.append(request.url))
    tab.on("websocket", lambda ws: urls.append(ws.url))
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    tab.on(
        "console",
        lambda msg: "Content Security Policy" in msg.text and problems.append(msg.text),
    )
    return urls, problems


def open_page(tab: Page, system) -> None:
    tab.goto(system.http_url + "/")
    expect(tab.locator("body")).to_have_attribute("data-ready", "true")


def log_in(tab: Page, key: str, account: str) -> None:
    tab.get_by_label("API key").fill(key)
    tab.get_by_role("button", name="Log in", exact=True).click()
    expect(tab.locator("#account-id")).to_have_text(account)
    expect(tab.locator("#error")).to_be_hidden()


def place(tab: Page, side: str, qty: str, price: str) -> None:
    tab.get_by_label("Buy" if side == "BUY" else "Sell", exact=True).first.check()
    tab.get_by_label("Type").select_option("LIMIT")
    tab.get_by_label("Quantity").fill(qty)
    tab.get_by_label("Limit price").fill(price)
    tab.get_by_role("button", name="Place order", exact=True).click()


def row(table: str, *cells: str):
    """The locator of a table row whose cells include these texts, in this order."""
    return table + " tbody tr" + "".join(f':has(td:text-is("{c}"))' for c in cells)


def shot(tab: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def load_figures(tab: Page) -> dict:
    tab.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0")
    return tab.evaluate(
        """() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const res = performance.getEntriesByType('resource');
        const all = [nav, ...res];
        return {
          files: all.length,
          transfer_bytes: all.reduce((n, e) => n + e.transferSize, 0),
          body_bytes: all.reduce((n, e) => n + e.decodedBodySize, 0),
          first_contentful_paint_ms:
            performance.getEntriesByName('first-contentful-paint')[0].startTime,
          dom_content_loaded_ms: nav.domContentLoadedEventEnd,
        };
      }"""
    )


def test_trading_screen_orders_book_cancel_trade_and_errors(page: Page, system, http):
    buyer, key = new_account(http, system, "10000")
    seller, seller_key = new_account(http, system, "0")
    symbol = new_symbol(http, system, seller, "100")
    urls, problems = watch(page)

    open_page(page, system)
    figures = load_figures(page)
    print("\nweb UI page load:", json.dumps(figures))
    assert figures["transfer_bytes"] < PAGE_BUDGET, figures

    # the decimal parsing the book and the chart order by, against Python's Decimal
    samples = ["0", "10", "10.5", "0.0001", "7.00", "-3.25", "12345678901234.5678", "99.9999"]
    got = page.evaluate(
        "async (xs) => { const d = await import('/web/decimal.js');"
        " return xs.map((x) => String(d.priceUnits(x))); }",
        samples,
    )
    twin = [str(int((Decimal(s) * 10_000).to_integral_value(ROUND_DOWN))) for s in samples]
    assert got == twin

    # the chart's pure layout: the highest high at the top, the lowest low at the bottom, a
    # rising candle's body from its open up to its close (the candles themselves come from
    # GET /markets/{symbol}/candles: test_a_trade_draws_a_candle)
    shape = page.evaluate(
        """async () => { const c = await import('/web/chart.js');
        const k = (open, high, low, close) => ({start: 0, interval: '1s', open, high, low, close,
          volume: 1, vwap: close, trades: 1});
        return c.layout([k('10', '12', '9.5', '11'), k('11', '11.5', '8', '8.25')], 640, 240); }"""
    )
    rising, falling = shape["bars"]
    assert (shape["hiText"], shape["loText"]) == ("12", "8")
    assert rising["wick"]["y1"] == shape["hiY"] and falling["wick"]["y2"] == shape["loY"]
    assert rising["up"] and not falling["up"]
    assert rising["body"]["y"] < rising["body"]["y"] + rising["body"]["h"] <= rising["wick"]["y2"]
    assert falling["body"]["y"] + falling["body"]["h"] < shape["loY"]  # closed above the low

    # a wrong key: the API's 401, verbatim
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page.locator("#error-status")).to_have_text("401")
    expect(page.locator("#error-text")).to_have_text("unknown API key")
    log_in(page, key, buyer)

    page.locator("#symbol").fill(symbol)
    page.get_by_role("button", name="Show market", exact=True).click()
    expect(page.locator("#book-symbol")).to_have_text(symbol)

    # a limit order: in the book, in my orders, its cash held
    place(page, "BUY", "10", "10.5")
    expect(page.locator(row("#bids", "10.5", "10"))).to_have_count(1)
    mine = page.locator(row("#orders", symbol, "BUY", "10.5", "10"))
    expect(mine).to_have_count(1)
    expect(page.locator("#cash-held")).to_have_text("105")
    order_id = mine.locator("td").first.inner_text()

    # cancelled: gone from both, the cash back
    page.get_by_role("button", name=f"Cancel order {order_id}", exact=True).click()
    expect(page.locator("#status")).to_contain_text(f"Order {order_id}")
    expect(page.locator("#orders tbody tr")).to_have_count(0)
    expect(page.locator("#bids tbody tr")).to_have_count(0)
    expect(page.locator("#cash-held")).to_have_text("0")

    # an invalid order: the API's 422, exactly as the API words it (nothing is appended)
    body = {"symbol": symbol, "side": "BUY", "type": "LIMIT", "qty": "1", "price": "10.12345"}
    body |= {"tif": "GTC", "post_only": False}
    direct = http.post("/orders", json=body, headers=bearer(key))
    assert direct.status_code == 422
    place(page, "BUY", "1", "10.12345")
    expect(page.locator("#error-status")).to_have_text("422")
    expect(page.locator("#error-text")).to_have_text(direct.json()["error"])

    # two accounts cross: the trade prints, the fill and the position show
    place(page, "BUY", "5", "11")
    expect(page.locator(row("#bids", "11", "5"))).to_have_count(1)
    expect(page.locator("#error")).to_be_hidden()
    sold = http.post(
        "/orders?wait=matched",
        json={"symbol": symbol, "side": "SELL", "type": "LIMIT", "qty": "5", "price": "11"},
        headers=bearer(seller_key),
    )
    assert sold.status_code == 201 and sold.json()["detail"]["status"] == "executed", sold.text
    expect(page.locator("#trades tbody tr").first.locator("td").nth(1)).to_have_text("11")
    expect(page.locator(row("#trades", "11", "5", "SELL"))).to_have_count(1)
    expect(page.locator(row("#fills", symbol, "BUY", "11", "5"))).to_have_count(1)
    expect(page.locator(row("#positions", symbol, "5"))).to_have_count(1)
    expect(page.locator("#bids tbody tr")).to_have_count(0)
    expect(page.locator("#cash-available")).to_have_text("9945")

    # a resting book on both sides for the picture
    place(page, "BUY", "3", "10.75")
    expect(page.locator(row("#bids", "10.75", "3"))).to_have_count(1)
    ask = {"symbol": symbol, "side": "SELL", "type": "LIMIT", "qty": "7", "price": "11.25"}
    assert http.post("/orders", json=ask, headers=bearer(seller_key)).status_code == 201
    expect(page.locator(row("#asks", "11.25", "7"))).to_have_count(1)
    shot(page, "trading.png")
    assert not [u for u in urls if key in u], "the API key must never be in a URL"
    assert not problems


def test_a_trade_draws_a_candle(page: Page, system, http):
    """The candle comes from GET /markets/{symbol}/candles (the analytics app's endpoint)."""
    buyer, key = new_account(http, system, "1000")
    seller, seller_key = new_account(http, system, "0")
    symbol = new_symbol(http, system, seller, "10")
    bid = {"symbol": symbol, "side": "BUY", "type": "LIMIT", "qty": "4", "price": "12.5"}
    assert http.post("/orders", json=bid, headers=bearer(key)).status_code == 201
    ask = bid | {"side": "SELL"}
    sold = http.post("/orders?wait=matched", json=ask, headers=bearer(seller_key))
    assert sold.json()["detail"]["status"] == "executed", sold.text

    open_page(page, system)
    log_in(page, key, buyer)
    page.locator("#symbol").fill(symbol)
    page.get_by_role("button", name="Show market", exact=True).click()
    expect(page.locator(row("#trades", "12.5", "4"))).to_have_count(1)
    chart = page.locator("#chart")
    expect(chart).not_to_have_attribute("data-candles", "0", timeout=30_000)
    candles = http.get(f"/markets/{symbol}/candles", params={"interval": "1m", "limit": 60})
    assert candles.status_code == 200, candles.text
    last = candles.json()[-1]
    assert (last["open"], last["close"], last["trades"]) == ("12.5", "12.5", 1), last
    expect(page.locator("#candle-note")).to_contain_text(f"close {last['close']}")
    shot(page, "trading.png")  # the trading screen with its candle


def test_day_trading_screen(page: Page, system, http, tmp_path: Path):
    account, key = new_account(http, system, "0")
    symbol = "".join(random.choices(string.ascii_uppercase, k=3))  # a day-trading symbol
    urls, problems = watch(page)
    open_page(page, system)
    log_in(page, key, account)
    page.get_by_role("button", name="Day trading", exact=True).click()
    expect(page.locator("#dt-cash")).to_have_text("0.00")  # the summary, read on arrival

    # enough for 2 shares at any quote (at most 500.00 x 1.896 each) and the 50.00 set aside
    # after them: with 1000, a symbol quoted above 475.00 left too little (failed CI so once)
    page.get_by_label("Add dollars").fill("5000")
    page.get_by_role("button", name="ADD", exact=True).click()
    expect(page.locator("#dt-answer")).to_contain_text("ADD (txn")
    expect(page.locator("#dt-cash")).to_have_text("5000.00")

    page.locator("#dt-symbol").fill(symbol)
    page.get_by_role("button", name="QUOTE", exact=True).click()
    expect(page.locator("#dt-quote")).to_have_text(re.compile(rf"^{symbol} \d+\.\d\d$"))
    price = page.locator("#dt-quote").inner_text().split()[1]
    cents = int(price.replace(".", ""))
    amount = f"{2 * cents // 100}.{2 * cents % 100:02d}"

    # BUY: pending with its countdown, then COMMIT_BUY within it
    page.locator("#dt-amount").fill(amount)
    page.get_by_role("button", name="BUY", exact=True).click()
    pending = page.locator("#dt-pending-buy")
    expect(pending.locator(".what")).to_have_text(f"2 {symbol} at {price} = {amount}")
    expect(pending.locator(".countdown")).to_have_text(re.compile(r"^\d+ s left$"))
    left = int(pending.locator(".countdown").inner_text().split()[0])
    assert 0 < left <= 60
    expect(page.get_by_role("button", name="COMMIT_BUY", exact=True)).to_be_enabled()
    page.get_by_role("button", name="DISPLAY_SUMMARY", exact=True).click()
    expect(page.locator(row("#dt-pendings", "BUY", symbol, "2", price, amount))).to_have_count(1)
    page.locator("#dt-set-symbol").fill(symbol)
    page.locator("#dt-set-amount").fill("50")
    shot(page, "daytrading.png")

    page.get_by_role("button", name="COMMIT_BUY", exact=True).click()
    expect(page.locator("#dt-answer")).to_contain_text("COMMIT_BUY (txn")
    expect(page.locator("#dt-answer")).to_contain_text(f"{symbol}, 2 shares")
    expect(pending.locator(".what")).to_have_text("none")
    expect(page.get_by_role("button", name="COMMIT_BUY", exact=True)).to_be_disabled()
    page.get_by_role("button", name="DISPLAY_SUMMARY", exact=True).click()
    expect(page.locator(row("#dt-holdings", symbol, "2"))).to_have_count(1)
    expect(page.locator("#dt-pendings tbody tr")).to_have_count(0)

    # SET_BUY amount and trigger, in the summary; then cancelled
    page.get_by_role("button", name="Set amount", exact=True).click()
    expect(page.locator("#dt-answer")).to_contain_text("SET_BUY_AMOUNT (txn")
    page.locator("#dt-set-trigger").fill("1.00")
    page.get_by_role("button", name="Set trigger", exact=True).click()
    expect(page.locator("#dt-answer")).to_contain_text("SET_BUY_TRIGGER (txn")
    page.get_by_role("button", name="DISPLAY_SUMMARY", exact=True).click()
    expect(page.locator(row("#dt-settings", "BUY", symbol, "50.00", "1.00"))).to_have_count(1)
    page.get_by_role("button", name="Cancel setting", exact=True).click()
    expect(page.locator("#dt-answer")).to_contain_text("CANCEL_SET_BUY (txn")

    # a refusal: the ledger's 409 exactly as the API gives it
    page.locator("#dt-amount").fill(f"{cents}.00")  # 100 shares' worth; it holds 2
    page.get_by_role("button", name="SELL", exact=True).click()
    expect(page.locator("#error-status")).to_have_text("409")
    expect(page.locator("#error-text")).to_have_text(re.compile(r"^insufficient_shares: "))
    again = http.post(
        "/daytrade/sell", json={"symbol": symbol, "amount": f"{cents}.00"}, headers=bearer(key)
    )
    assert again.status_code == 409
    expect(page.locator("#error-text")).to_have_text(again.json()["error"])

    # DUMPLOG: the account's audit log, downloaded
    page.get_by_label("File name").fill("web-ui.xml")
    with page.expect_download() as download:
        page.get_by_role("button", name="DUMPLOG", exact=True).click()
    assert download.value.suggested_filename == "web-ui.xml"
    saved = tmp_path / "web-ui.xml"
    download.value.save_as(saved)
    log = etree.fromstring(saved.read_bytes())
    assert log.tag == "log" and len(log.findall("userCommand")) >= 10
    assert not [u for u in urls if key in u], "the API key must never be in a URL"
    assert not problems
