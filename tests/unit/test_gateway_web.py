"""The web front end's serving (services/gateway/web) and the browser's way to authenticate the
private stream (a subprotocol, so the key never goes into a URL), through the real app over the
day-trading HTTP tests' stand-in desk. The page itself is driven in tests/e2e/test_web_ui.py."""

from __future__ import annotations

import contextlib
import re

import pytest
from starlette.websockets import WebSocketDisconnect

from services.gateway.web import ASSETS, POLICY
from tests.unit.test_daytrade_http import app  # noqa: F401  (the fixture)

IMPORTS = re.compile(r'from "\./([A-Za-z0-9_.-]+)"')
LINKS = re.compile(r'(?:src|href)="([^"]+)"')


def test_the_page_and_every_asset_it_loads_are_served_with_the_policy(app):  # noqa: F811
    client, _, _ = app
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    wanted = {link for link in LINKS.findall(page.text) if link != "data:,"}  # no favicon fetch
    for name, asset in ASSETS.items():
        if name.endswith(".js"):
            wanted |= {f"/web/{m}" for m in IMPORTS.findall(asset.body.decode())}
    assert {"/web/app.js", "/web/app.css", "/web/trade.js", "/web/chart.js"} <= wanted
    for path in sorted(wanted):
        assert path.startswith("/web/"), f"{path}: every asset comes from this gateway"
        got = client.get(path)
        assert got.status_code == 200, path
        kind = "text/javascript" if path.endswith(".js") else "text/css"
        assert got.headers["content-type"].startswith(kind), path
    for asset in ASSETS.values():  # nothing is fetched from elsewhere at run time
        assert not re.search(rb"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", asset.body)


def test_assets_revalidate_with_their_etag_and_nothing_else_is_served(app):  # noqa: F811
    client, _, _ = app
    first = client.get("/web/app.js")
    again = client.get("/web/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    for path in ("/web/nope.js", "/web/index.html", "/web/..%2Fapi.py", "/web/__init__.py"):
        missing = client.get(path)
        assert missing.status_code == 404 and "error" in missing.json(), path
    refused = client.post("/")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET"
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_the_private_stream_takes_the_key_as_a_subprotocol(app, monkeypatch):  # noqa: F811
    client, desk, _ = app
    # the stand-in log has no tail to subscribe to: the stream only needs to be let in here
    monkeypatch.setattr(desk, "decisions_about", lambda account, feed: contextlib.nullcontext())
    offered = ["marketlog", "marketlog.key.key-7"]
    with client.websocket_connect("/ws/orders", subprotocols=offered) as ws:
        assert ws.accepted_subprotocol == "marketlog"
    bad = ["marketlog", "marketlog.key.x"]
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/ws/orders", subprotocols=bad),
    ):
        pass
    assert refused.value.code == 4401
    with client.websocket_connect("/ws/orders", headers={"Authorization": "Bearer key-8"}) as ws:
        assert ws.accepted_subprotocol is None  # header clients are unchanged
