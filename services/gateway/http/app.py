"""The HTTP JSON API (FastAPI): OpenAPI at /openapi.json, docs page at /docs, WebSocket streams.

``create_app`` assembles one router per OpenAPI tag (``admin``, ``account``, ``orders``,
``market``, ``daytrade``, ``health``; the admin's DUMPLOG joins ``admin``) and the streams,
around the desk. Writes append a command and answer from its decision (request/reply over the
log); reads answer from the projection, after it shows the caller's own earlier writes. Errors
are always ``{"error": ..., "command_id": ...}``.
"""

from typing import Any

from fastapi import FastAPI

from services.common.collector import Collector
from services.common.config import Settings

from ..config import GatewaySettings
from ..dashboard import routes as dashboard
from ..dashboard.feed import Feed
from ..desk import Desk
from ..web import router as web_ui
from . import account, admin, candles, daytrade, errors, health, market, orders, streams
from .auth import Auth
from .bodylimit import BodyLimit

DESCRIPTION = """Marketlog's HTTP API. Authenticate with `Authorization: Bearer <key>`: an account's
key (returned once by `POST /accounts`) or the admin key. Amounts are decimal strings, each in the
exact form its pattern gives. Writes answer with the ledger's decision; reads reflect every earlier
write made with the same key. A request this document calls valid is never refused with 422."""
# the document lists them so
ROUTERS = (admin, account, orders, market, candles, daytrade, health, streams)


def create_app(desk: Desk, settings: GatewaySettings) -> FastAPI:
    app = FastAPI(title="Marketlog", version="1", description=DESCRIPTION, responses=errors.ERRORS)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:  # FastAPI's document model makes bounds floats
            app.openapi_schema = _whole_numbers(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.desk = desk
    app.state.auth = Auth(desk, settings.admin_key, settings.key_rate, settings.key_burst)
    errors.install(app)
    app.add_middleware(BodyLimit, limit=settings.http_max_body)
    for room in ROUTERS:
        app.include_router(room.router)
        if room is admin:
            app.include_router(daytrade.admin_router)
    app.include_router(web_ui)  # the traders' page at / (services/gateway/web, docs/web.md)
    # the operator dashboard (services/gateway/dashboard): figures from the log, the metrics
    # endpoints and the projection, collected on the first request
    app.state.dashboard = Feed(lambda: Collector(Settings(), local="gateway"))
    app.include_router(dashboard.router)
    return app


def _whole_numbers(value: Any) -> Any:
    """The OpenAPI document with whole floats as integers (2**53 - 1, not 9007199254740991.0)."""
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
