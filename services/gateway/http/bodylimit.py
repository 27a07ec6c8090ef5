"""The HTTP API's cap on request bodies, as plain ASGI middleware.

A body over the cap is refused with 413 before any route sees it: by its Content-Length, or,
for a body sent without one (chunked), once more than the cap has arrived; that body is then
handed on whole. Plain ASGI rather than Starlette's ``@app.middleware("http")``
(BaseHTTPMiddleware), which runs every request's app in a task group of its own with a
streaming wrapper around its response: 25 % of the gateway's samples at 300 HTTP orders/s
(py-spy); the gateway's CPU per HTTP order fell by a third without it (docs/performance.md).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Gone:
    """What ``_read`` answers when the client disconnects before the body's end."""


GONE = _Gone()


class BodyLimit:
    def __init__(self, app: App, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.limit:
                await self._refuse(send)
                return
        elif scope["method"] in WITH_BODY:
            body = await self._read(receive)
            if isinstance(body, _Gone):  # the client left before the body's end: no one to answer
                return
            if body is None:
                await self._refuse(send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _read(self, receive: Receive) -> bytes | _Gone | None:
        """The whole body; None once it passes the limit, GONE if the client leaves first (a
        truncated body must not reach a route as if it were whole)."""
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return GONE
            body += message.get("body", b"")
            if len(body) > self.limit:
                return None
            if not message.get("more_body", False):
                return body

    async def _refuse(self, send: Send) -> None:
        payload = json.dumps({"error": f"body over {self.limit} bytes", "command_id": None})
        content = payload.encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body already read, then whatever the connection says next."""
    given = False

    async def again() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again
