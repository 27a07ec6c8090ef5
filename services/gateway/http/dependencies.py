"""What a route asks FastAPI for: the desk, and who is calling.

The keys are OpenAPI security schemes, so the document names the key each operation needs (for
clients and fuzzers); they never refuse anything themselves (``auto_error=False``): ``Auth``
reads the header and says 401, 403 or 429.
"""

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from ..desk import Desk
from .auth import Auth, Caller, bearer

ADMIN_KEY = HTTPBearer(
    scheme_name="AdminKey", description="The admin key (MARKETLOG_ADMIN_KEY).", auto_error=False
)
ACCOUNT_KEY = HTTPBearer(
    scheme_name="AccountKey",
    description="An account's API key, returned once by POST /accounts.",
    auto_error=False,
)
Credentials = HTTPAuthorizationCredentials | None


async def _desk(connection: HTTPConnection) -> Desk:
    return connection.app.state.desk


async def _auth(connection: HTTPConnection) -> Auth:
    return connection.app.state.auth


DeskDep = Annotated[Desk, Depends(_desk)]
AuthDep = Annotated[Auth, Depends(_auth)]


async def _account(
    request: Request, auth: AuthDep, _: Annotated[Credentials, Security(ACCOUNT_KEY)]
) -> Caller:
    return await auth.account(bearer(request.headers.get("authorization")))


async def _admin(
    request: Request, auth: AuthDep, _: Annotated[Credentials, Security(ADMIN_KEY)]
) -> Caller:
    return await auth.admin(bearer(request.headers.get("authorization")))


async def public(request: Request, auth: AuthDep) -> None:
    """Public data: no key, a token bucket per client address."""
    auth.limit("ip:" + (request.client.host if request.client else "?"))


Account = Annotated[Caller, Depends(_account)]
Admin = Annotated[Caller, Depends(_admin)]
