"""The traders' web front end (docs/web.md): one page at ``/`` and its assets at ``/web/<name>``,
plain HTML, CSS and JavaScript kept in ``static/`` (no build step, nothing fetched from elsewhere).

The page talks only to the HTTP API and the WebSocket streams, with the account's key from
``sessionStorage``. Assets are read once at start and served from memory with an ETag (a revisit
costs one 304 per file); every answer carries a Content-Security-Policy that lets the page load
and connect to this origin only. Only the files listed here are served, so no path from a
request ever reaches the file system.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..http.errors import ApiError

STATIC = Path(__file__).resolve().parent / "static"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
# 'self' covers ws:/wss: to this host in CSP level 3 (what Chromium and Firefox implement)
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate each load: a new gateway serves its own assets
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load(folder: Path = STATIC) -> dict[str, Asset]:
    """Every asset of the folder by name, with its type and a content hash as ETag."""
    assets = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in TYPES:
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            assets[path.name] = Asset(body, TYPES[path.suffix], etag)
    return assets


ASSETS = load()
router = APIRouter(include_in_schema=False)  # the page is not part of the API's document


def _serve(asset: Asset, request: Request) -> Response:
    headers = {**HEADERS, "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/")
async def page(request: Request) -> Response:
    return _serve(ASSETS["index.html"], request)


@router.get("/web/{name}")
async def asset(name: str, request: Request) -> Response:
    found = ASSETS.get(name)
    if found is None or name == "index.html":
        raise ApiError(404, f"no web asset {name[:64]}")
    return _serve(found, request)
