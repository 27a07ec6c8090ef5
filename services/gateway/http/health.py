"""Whether this gateway is ready: what `make up` and load balancers ask."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from . import models as m
from .dependencies import DeskDep

router = APIRouter(tags=["health"])


@router.get("/ready", response_model=m.Readiness, responses={503: {"model": m.Readiness}})
async def ready(desk: DeskDep) -> JSONResponse:
    """200 once this gateway can answer a write and read it back: the log's tails are
    assigned and the projection has applied everything in the log when it started. 503
    until then, saying what it waits for."""
    waiting = desk.waiting_for()
    body = m.Readiness(ready=not waiting, waiting_for=waiting)
    return JSONResponse(body.model_dump(), status_code=503 if waiting else 200)
