"""How the HTTP API says no: always ``{"error": ..., "command_id": ...}`` with the status the
OpenAPI document lists (``ERRORS``), whatever raised it: a route (``ApiError``), the log (no
decision in time, 504; not taken, 503), the projection (lagging, 503), validation (422) or
Starlette itself (404, 405 with the path's whole ``Allow``)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..bus import AppendError, DecisionTimeout, Event
from ..commands import REJECTED
from ..desk import Desk
from ..projection import ProjectionTimeout
from . import models as m

ERRORS = {
    code: {"model": m.ErrorBody, "description": text}
    for code, text in {
        400: "Malformed HTTP request",
        401: "Missing or unknown API key",
        403: "The key may not do this",
        404: "Not found (another account's order is not found either)",
        409: "Refused by the exchange's state: the ledger's reason (insufficient funds, unknown "
        "order, ...), or a GTD expire_ts no longer in the future",
        413: "Body too large",
        422: "Invalid request: not what this document describes (nothing was appended)",
        429: "Rate limit exceeded",
        503: "The log or the projection is not answering",
        504: "No decision arrived in time",
    }.items()
}


class ApiError(Exception):
    """An answer other than success: status code, message, and the command id if one was sent."""

    def __init__(self, status: int, message: str, command_id: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.command_id = status, message, command_id


def granted(event: Event) -> Event:
    """A write's decision, unless the ledger refused the command: then 409 with its reason (a
    retry of a refused command gets the original refusal as its answer, duplicate=true)."""
    if event.name == REJECTED and not event.record.get("duplicate"):
        command_id = event.record["envelope"]["command_id"]
        raise ApiError(409, event.record["reason"], command_id)
    return event


async def listed(desk: Desk, symbol: str) -> None:
    """404 unless the symbol is listed."""
    if not await desk.has_symbol(symbol):
        raise ApiError(404, f"unknown symbol {symbol}")


def _error(status: int, message: str, command_id: str | None = None) -> JSONResponse:
    return JSONResponse(m.ErrorBody(error=message, command_id=command_id).model_dump(), status)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.command_id)

    @app.exception_handler(DecisionTimeout)
    async def undecided(_: Request, exc: DecisionTimeout) -> JSONResponse:
        return _error(504, str(exc), exc.command_id)

    @app.exception_handler(AppendError)
    async def not_appended(_: Request, exc: AppendError) -> JSONResponse:
        return _error(503, str(exc), exc.command_id)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {"error": str(exc.detail), "command_id": None}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route matching the path only; a path
            # served by several routes (GET and POST /orders) supports all of theirs
            allowed = _allowed_methods(app, request)
            headers["Allow"] = ", ".join(allowed)
            body["error"] = f"method {request.method} not allowed here; allowed: {headers['Allow']}"
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(ProjectionTimeout)
    async def lagging(_: Request, exc: ProjectionTimeout) -> JSONResponse:
        return _error(503, str(exc))

    @app.exception_handler(m.InvalidRequest)
    async def invalid(_: Request, exc: m.InvalidRequest) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(m.Overtaken)
    async def overtaken(_: Request, exc: m.Overtaken) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()[:5]
        )
        return _error(422, f"invalid request: {problems}")


_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route serves at the request's path, in a stable order (the routes of
    an included router too: FastAPI keeps those inside it, not in the app's list)."""
    allowed: set[str] = set()
    for route in iter_route_contexts(app.router.routes):
        methods = route.methods
        if methods and route.matches(request.scope)[0] is not Match.NONE:
            allowed |= methods
    order = {method: i for i, method in enumerate(_METHOD_ORDER)}
    return sorted(allowed, key=lambda method: (order.get(method, len(order)), method))
