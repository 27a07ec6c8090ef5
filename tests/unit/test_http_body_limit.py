"""The HTTP API's body cap (services/gateway/http/bodylimit.py), driven as ASGI: a body over the
cap gets 413 and never reaches the app; one under it reaches the app whole."""

import asyncio
import json

from services.gateway.http.bodylimit import BodyLimit

LIMIT = 10


def call(
    method: str, chunks: list[bytes], length: str | None = None, cut: bool = False
) -> tuple[int | None, dict, list]:
    """Run one request through BodyLimit around an app that echoes the body it reads; ``cut``:
    the client disconnects before the last chunk says the body is complete."""
    reached: list[bytes] = []
    sent: list[dict] = []
    incoming = [
        {"type": "http.request", "body": c, "more_body": cut or i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ] + [{"type": "http.disconnect"}]

    async def receive() -> dict:
        return incoming.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    async def echo(scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        reached.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    headers = [(b"host", b"x")] + ([(b"Content-Length", length.encode())] if length else [])
    scope = {"type": "http", "method": method, "headers": headers}
    asyncio.run(BodyLimit(echo, LIMIT)(scope, receive, send))
    if not sent:
        return None, {}, reached
    body = json.loads(sent[1]["body"]) if sent[0]["status"] == 413 else {}
    return sent[0]["status"], body, reached


def test_a_declared_length_over_the_cap_is_refused_unread():
    status, body, reached = call("POST", [b"x" * 11], length="11")
    assert status == 413 and reached == []
    assert body == {"error": "body over 10 bytes", "command_id": None}


def test_a_length_that_is_not_a_number_is_refused():
    assert call("POST", [b"{}"], length="-1")[0] == 413
    assert call("POST", [b"{}"], length="2x")[0] == 413


def test_a_chunked_body_is_refused_once_it_passes_the_cap():
    status, _, reached = call("POST", [b"x" * 6, b"y" * 6, b"z" * 6])
    assert status == 413 and reached == []


def test_a_chunked_body_within_the_cap_reaches_the_app_whole():
    status, _, reached = call("PUT", [b"12345", b"67890"])
    assert status == 200 and reached == [b"1234567890"]


def test_bodies_within_the_cap_and_bodiless_requests_pass():
    assert call("POST", [b"0123456789"], length="10")[:3:2] == (200, [b"0123456789"])
    assert call("GET", [b""])[:3:2] == (200, [b""])


def test_a_body_cut_short_by_a_disconnect_never_reaches_the_app():
    assert call("POST", [b'{"qty": "1"}'[:5]], cut=True) == (None, {}, [])
