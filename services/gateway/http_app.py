"""The HTTP JSON API (FastAPI): OpenAPI at /openapi.json, docs page at /docs.

Writes append a command and answer from its decision (request/reply over the log); reads answer
from the projection, after it shows the caller's own earlier writes. Errors are always
``{"error": ..., "command_id": ...}``.
"""

import secrets
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from services.common.money import format_cash, format_price, format_qty

from . import commands as cmd
from . import http_models as m
from .bus import AppendError, DecisionTimeout, Event
from .commands import REJECTED
from .config import GatewaySettings
from .exchange import Exchange, Session
from .http_auth import ApiError, Auth, Caller, bearer, new_key
from .projection import ProjectionTimeout
from .ws import add_streams

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
DESCRIPTION = """Marketlog's HTTP API. Authenticate with `Authorization: Bearer <key>`: an account's
key (returned once by `POST /accounts`) or the admin key. Amounts are decimal strings, each in the
exact form its pattern gives. Writes answer with the ledger's decision; reads reflect every earlier
write made with the same key. A request this document calls valid is never refused with 422."""
# the keys as OpenAPI security schemes: which operations need which, for clients and fuzzers; the
# header itself is read by http_auth.bearer (these never refuse anything: auto_error=False)
ADMIN_KEY = HTTPBearer(
    scheme_name="AdminKey", description="The admin key (MARKETLOG_ADMIN_KEY).", auto_error=False
)
ACCOUNT_KEY = HTTPBearer(
    scheme_name="AccountKey",
    description="An account's API key, returned once by POST /accounts.",
    auto_error=False,
)
Credentials = HTTPAuthorizationCredentials | None

OrderId = Annotated[int, Path(ge=1, le=m.MAX_ID)]


def create_app(exchange: Exchange, settings: GatewaySettings) -> FastAPI:
    app = FastAPI(title="Marketlog", version="1", description=DESCRIPTION, responses=ERRORS)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:  # FastAPI's document model makes bounds floats
            app.openapi_schema = _whole_numbers(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    auth = Auth(exchange, settings.admin_key, settings.key_rate, settings.key_burst)
    app.state.auth = auth
    _install_errors(app)
    _limit_body(app, settings.http_max_body)

    async def account(request: Request, _: Annotated[Credentials, Security(ACCOUNT_KEY)]) -> Caller:
        return await auth.account(bearer(request.headers.get("authorization")))

    async def admin(request: Request, _: Annotated[Credentials, Security(ADMIN_KEY)]) -> Caller:
        return await auth.admin(bearer(request.headers.get("authorization")))

    async def public(request: Request) -> None:
        auth.limit("ip:" + (request.client.host if request.client else "?"))

    Account = Annotated[Caller, Depends(account)]
    Admin = Annotated[Caller, Depends(admin)]

    async def write(
        command: cmd.Command, session: Session, not_found: bool = False, placed: bool = False
    ) -> Event:
        try:
            event = await exchange.request(command, session, placed)
        except DecisionTimeout as exc:
            raise ApiError(504, str(exc), command.command_id) from exc
        except AppendError as exc:
            raise ApiError(503, str(exc), command.command_id) from exc
        if event.name == REJECTED and not event.record.get("duplicate"):
            raise ApiError(404 if not_found else 409, event.record["reason"], command.command_id)
        return event

    async def read(session: Session) -> None:
        try:
            await exchange.caught_up(session)
        except ProjectionTimeout as exc:
            raise ApiError(503, str(exc)) from exc

    async def known_symbol(symbol: str) -> None:
        try:
            if not await exchange.directory.has_symbol(symbol):
                raise ApiError(404, f"unknown symbol {symbol}")
        except ProjectionTimeout as exc:
            raise ApiError(503, str(exc)) from exc

    async def own_order(caller: Caller, order_id: int):
        await read(caller.session)
        view = await exchange.projection.order(caller.account or "", order_id)
        if view is None:
            raise ApiError(404, f"no order {order_id}")
        return view

    # -- admin ---------------------------------------------------------------------------------
    @app.post("/accounts", status_code=201, response_model=m.CreatedAccount, tags=["admin"])
    async def create_account(body: m.NewAccount, caller: Admin) -> m.CreatedAccount:
        """Open an account. Its API key is in this answer only; the log keeps its SHA-256."""
        balance = m.cash(body.balance, "balance", positive=False)
        account_id = body.account_id or str(secrets.randbelow(9 * 10**15) + 10**15)
        key, digest = new_key()
        stamp = exchange.stamp()
        await write(cmd.create_account(stamp, account_id, balance, digest), caller.session)
        return m.CreatedAccount(account_id=account_id, api_key=key, balance=format_cash(balance))

    @app.post("/symbols", status_code=201, response_model=m.SymbolOut, tags=["admin"])
    async def create_symbol(body: m.NewSymbol, caller: Admin) -> m.SymbolOut:
        """List a symbol (listing one already listed answers created=false)."""
        tick, lot = m.price(body.tick, "tick"), m.qty(body.lot, "lot")
        event = await write(
            cmd.create_symbol(exchange.stamp(), body.symbol, tick, lot), caller.session
        )
        r = event.record
        return m.SymbolOut(
            symbol=body.symbol,
            tick=format_price(r["tick"]),
            lot=format_qty(r["lot"]),
            created=r["created"],
        )

    @app.post("/symbols/{symbol}/issue", response_model=m.Issued, tags=["admin"])
    async def issue_shares(
        symbol: Annotated[str, Path(pattern=m.SYMBOL)], body: m.Issue, caller: Admin
    ) -> m.Issued:
        """Add shares of a symbol to an account."""
        qty = m.qty(body.qty)
        await known_symbol(symbol)
        if not await exchange.directory.has_account(body.account_id):
            raise ApiError(409, f"unknown account {body.account_id}")
        command = cmd.issue_shares(exchange.stamp(), body.account_id, symbol, qty)
        event = await write(command, caller.session)
        return m.Issued(
            account_id=body.account_id,
            symbol=symbol,
            shares_available=format_qty(event.record["shares_available"]),
        )

    # -- cash and holdings -------------------------------------------------------------------
    @app.post("/account/deposit", response_model=m.CashOut, tags=["account"])
    async def deposit(body: m.Cash, caller: Account) -> m.CashOut:
        amount = m.cash(body.amount, "amount")
        event = await write(cmd.deposit(exchange.stamp(), caller.account, amount), caller.session)
        return _cash(caller, amount, event)

    @app.post("/account/withdraw", response_model=m.CashOut, tags=["account"])
    async def withdraw(body: m.Cash, caller: Account) -> m.CashOut:
        amount = m.cash(body.amount, "amount")
        event = await write(cmd.withdraw(exchange.stamp(), caller.account, amount), caller.session)
        return _cash(caller, amount, event)

    @app.get("/account/balance", response_model=m.BalanceOut, tags=["account"])
    async def balance(caller: Account) -> m.BalanceOut:
        await read(caller.session)
        row = await exchange.projection.balance(caller.account or "")
        available, held = (row["available"], row["held"]) if row else (0, 0)
        return m.BalanceOut(
            account_id=caller.account or "",
            cash_available=format_cash(available),
            cash_held=format_cash(held),
        )

    @app.get("/account/positions", response_model=list[m.PositionOut], tags=["account"])
    async def positions(caller: Account) -> list[m.PositionOut]:
        await read(caller.session)
        rows = await exchange.projection.positions(caller.account or "")
        return [
            m.PositionOut(
                symbol=r["symbol"], available=format_qty(r["available"]), held=format_qty(r["held"])
            )
            for r in rows
        ]

    # -- orders --------------------------------------------------------------------------------
    @app.post("/orders", status_code=201, response_model=m.Decision, tags=["orders"])
    async def place(
        body: m.NewOrder,
        caller: Account,
        wait: Annotated[Literal["accepted", "matched"], Query()] = "accepted",
    ) -> m.Decision:
        """Place an order. By default (wait=accepted) the answer is the ledger's decision
        (OrderAccepted: its cash or shares are held and it went to the book). With wait=matched
        the answer comes once the order has been matched and every settlement it caused is
        decided: an OrderPlaced with the order's status, open quantity and the fills of that
        match (or the OrderAccepted if the matcher is not heard in time). A repeated
        client_order_id gets the original acceptance."""
        spec = m.order_spec(body, exchange.stamp().ts)
        await known_symbol(spec.symbol)
        command = cmd.place_order(exchange.stamp(), caller.account, spec)
        event = await write(command, caller.session, placed=wait == "matched")
        return _placement(event) or _decision(event)

    @app.get("/orders", response_model=list[m.OrderOut], tags=["orders"])
    async def list_orders(
        caller: Account,
        status: Annotated[Literal["open", "cancelled", "executed"] | None, Query()] = None,
        symbol: Annotated[str | None, Query(pattern=m.SYMBOL)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        before: Annotated[int | None, Query(ge=1, le=m.MAX_ID)] = None,
    ) -> list[m.OrderOut]:
        """The caller's orders, newest first (page with before=<order_id>)."""
        await read(caller.session)
        rows = await exchange.projection.orders(caller.account or "", status, symbol, limit, before)
        return [m.order_out(r) for r in rows]

    @app.get("/orders/{order_id}", response_model=m.OrderDetail, tags=["orders"])
    async def get_order(order_id: OrderId, caller: Account) -> m.OrderDetail:
        view = await own_order(caller, order_id)
        return m.OrderDetail(
            **m.order_out(view.order).model_dump(),
            executions=[m.execution_out(e, view.order) for e in view.executions],
        )

    @app.delete("/orders/{order_id}", response_model=m.Decision, tags=["orders"])
    async def cancel(order_id: OrderId, caller: Account) -> m.Decision:
        await own_order(caller, order_id)
        command = cmd.cancel_order(exchange.stamp(), caller.account, order_id)
        return _decision(await write(command, caller.session, not_found=False))

    @app.post("/orders/{order_id}/reduce", response_model=m.Decision, tags=["orders"])
    async def reduce(order_id: OrderId, body: m.Reduce, caller: Account) -> m.Decision:
        """Take qty off the order's open quantity; it keeps its place in the queue."""
        qty = m.qty(body.qty)
        await own_order(caller, order_id)
        command = cmd.reduce_order(exchange.stamp(), caller.account, order_id, qty)
        return _decision(await write(command, caller.session))

    @app.post("/orders/{order_id}/replace", response_model=m.Decision, tags=["orders"])
    async def replace(order_id: OrderId, body: m.Replace, caller: Account) -> m.Decision:
        """Replace the order with a new price and open quantity (a new order id, a new place)."""
        price, qty = m.price(body.price), m.qty(body.qty)
        await own_order(caller, order_id)
        command = cmd.replace_order(exchange.stamp(), caller.account, order_id, price, qty)
        closed = await write(command, caller.session)
        accepted = [e for e in closed.related if e.name.endswith("OrderAccepted")]
        return _decision(accepted[-1] if accepted else closed)

    @app.get("/executions", response_model=list[m.Execution], tags=["orders"])
    async def executions(
        caller: Account,
        symbol: Annotated[str | None, Query(pattern=m.SYMBOL)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[m.Execution]:
        """The caller's fills, newest first."""
        await read(caller.session)
        rows = await exchange.projection.executions(caller.account or "", symbol, limit)
        return [m.execution_out(r) for r in rows]

    # -- market data (public) ----------------------------------------------------------------
    @app.get(
        "/markets/{symbol}/book",
        response_model=m.BookOut,
        tags=["market"],
        dependencies=[Depends(public)],
    )
    async def book(
        symbol: Annotated[str, Path(pattern=m.SYMBOL)],
        depth: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> m.BookOut:
        """L2: the open quantity at each price, best first, and the sequence it reflects."""
        found = await exchange.projection.book(symbol, depth)
        if found is None:
            raise ApiError(404, f"unknown symbol {symbol}")
        seq, levels = found
        out = {"BUY": [], "SELL": []}
        for r in levels:
            out[r["side"]].append(m.Level(price=format_price(r["price"]), qty=format_qty(r["qty"])))
        return m.BookOut(symbol=symbol, seq=seq, bids=out["BUY"], asks=out["SELL"])

    @app.get(
        "/markets/{symbol}/trades",
        response_model=list[m.TradeOut],
        tags=["market"],
        dependencies=[Depends(public)],
    )
    async def trades(
        symbol: Annotated[str, Path(pattern=m.SYMBOL)],
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[m.TradeOut]:
        """Recent trades, newest first."""
        # public data waits on nobody's writes: it is what the projection shows now
        rows = await exchange.projection.trades(symbol, limit)
        if not rows and not await exchange.directory.knows_symbol(symbol):
            raise ApiError(404, f"unknown symbol {symbol}")
        return [
            m.TradeOut(
                seq=r["seq"],
                price=format_price(r["price"]),
                qty=format_qty(r["qty"]),
                taker_side=r["taker_side"],
                ts=r["ts"],
            )
            for r in rows
        ]

    @app.get(
        "/ready",
        response_model=m.Readiness,
        tags=["health"],
        responses={503: {"model": m.Readiness}},
    )
    async def ready() -> JSONResponse:
        """200 once this gateway can answer a write and read it back: the log's tails are
        assigned and the projection has applied everything in the log when it started. 503
        until then, saying what it waits for."""
        waiting = exchange.waiting_for()
        body = m.Readiness(ready=not waiting, waiting_for=waiting)
        return JSONResponse(body.model_dump(), status_code=503 if waiting else 200)

    add_streams(app, exchange, auth)
    return app


def _cash(caller: Caller, amount: int, event: Event) -> m.CashOut:
    return m.CashOut(
        account_id=caller.account or "",
        amount=format_cash(amount),
        cash_available=format_cash(event.record["cash_available"]),
    )


def _placement(event: Event) -> m.Decision | None:
    """An order's answer after its match: its OrderPlaced, with the order's fills of that match."""
    order_id = event.record.get("order_id")
    placed = [e for e in event.related if e.name == cmd.PLACED and e.record["order_id"] == order_id]
    if not placed or event.name != cmd.ACCEPTED:
        return None
    fills = [
        e.record
        for e in event.related
        if e.name == cmd.FILLED and e.key == event.key and e.record["order_id"] == order_id
    ]
    answer = _decision(placed[0])
    executed = sum(f["qty"] for f in fills)
    status = "open" if placed[0].record["open_qty"] else ("executed" if executed else "cancelled")
    answer.detail["status"] = status
    answer.detail["executed_qty"] = format_qty(executed)
    answer.detail["fills"] = [m.decision_detail(f) for f in fills]
    return answer


def _decision(event: Event) -> m.Decision:
    record = event.record
    return m.Decision(
        command_id=record["envelope"]["command_id"],
        event=event.name.rsplit(".", 1)[-1],
        order_id=record.get("order_id"),
        duplicate=bool(record.get("duplicate")),
        detail=m.decision_detail(record),
    )


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        body = m.ErrorBody(error=exc.message, command_id=exc.command_id)
        return JSONResponse(body.model_dump(), status_code=exc.status)

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
        return JSONResponse({"error": str(exc), "command_id": None}, status_code=503)

    @app.exception_handler(m.InvalidRequest)
    async def invalid(_: Request, exc: m.InvalidRequest) -> JSONResponse:
        return JSONResponse({"error": str(exc), "command_id": None}, status_code=422)

    @app.exception_handler(m.Overtaken)
    async def overtaken(_: Request, exc: m.Overtaken) -> JSONResponse:
        return JSONResponse({"error": str(exc), "command_id": None}, status_code=409)

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()[:5]
        )
        return JSONResponse({"error": f"invalid request: {problems}", "command_id": None}, 422)


_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route serves at the request's path, in a stable order."""
    allowed: set[str] = set()
    for route in app.router.routes:
        methods = getattr(route, "methods", None)
        if methods and route.matches(request.scope)[0] is not Match.NONE:
            allowed |= methods
    order = {method: i for i, method in enumerate(_METHOD_ORDER)}
    return sorted(allowed, key=lambda method: (order.get(method, len(order)), method))


def _whole_numbers(value: Any) -> Any:
    """The OpenAPI document with whole floats as integers (2**53 - 1, not 9007199254740991.0)."""
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _limit_body(app: FastAPI, limit: int) -> None:
    @app.middleware("http")
    async def cap(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return JSONResponse({"error": f"body over {limit} bytes", "command_id": None}, 413)
        if length is None and request.method in ("POST", "PUT", "PATCH", "DELETE"):
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    return JSONResponse(
                        {"error": f"body over {limit} bytes", "command_id": None}, 413
                    )
            request._body = body
        return await call_next(request)
