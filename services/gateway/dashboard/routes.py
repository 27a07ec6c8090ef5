"""``/dashboard``: the page and its assets for anyone (they hold no data), the figures for the
admin key only (``GET /dashboard/data``, like the admin API: offsets, lag and counts describe the
whole exchange). The page asks for the key and keeps it in the tab's sessionStorage; nothing of
it reaches a URL or a log. None of these routes is in the OpenAPI document: they are the
operator's, not the integrators'."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from ..http.dependencies import Admin
from ..http.errors import ApiError

STATIC = Path(__file__).parent / "static"
ASSETS = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}

router = APIRouter(include_in_schema=False)


@router.get("/dashboard")
async def page() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html", media_type="text/html")


@router.get("/dashboard/data")
async def data(request: Request, caller: Admin) -> dict[str, Any]:
    del caller  # the admin key, checked by the dependency
    return await request.app.state.dashboard.figures()


@router.get("/dashboard/{asset}")
async def asset(asset: str) -> FileResponse:
    if asset not in ASSETS:
        raise ApiError(404, f"no dashboard asset {asset}")
    return FileResponse(STATIC / asset, media_type=ASSETS[asset])
