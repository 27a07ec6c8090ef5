"""The gateway process: start Kafka and PostgreSQL clients, both servers, mark ready, stop on
SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket

import uvicorn

from services.common.config import Settings
from services.common.gc_tuning import tune_for_service
from services.common.metrics import serve_metrics

from .channels.daytrade import DayTradeServer
from .channels.private import PrivateServer, list_default_symbol
from .channels.public import PublicServer
from .config import ChannelSettings, GatewaySettings
from .desk import Desk
from .http.app import create_app
from .ticker import Ticker
from .xml.server import XmlServer

log = logging.getLogger(__name__)


def _raise_fd_limit() -> None:
    """Thousands of XML connections need thousands of descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1 << 20), hard))


def _shared_socket(host: str, port: int) -> socket.socket:
    """The HTTP port bound with SO_REUSEPORT, for uvicorn (it has no such option)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


async def serve(settings: Settings, gateway: GatewaySettings) -> None:
    serve_metrics("gateway")  # its own and the dashboard's figures (services/gateway/metrics.py)
    desk = Desk.from_settings(settings, gateway)
    await desk.start()
    if not gateway.admin_key:
        log.warning("MARKETLOG_ADMIN_KEY is not set: admin endpoints refuse every key")
    xml = XmlServer(desk, gateway)
    await xml.start()
    channels = ChannelSettings()  # the JSON-lines channels (docs/channels.md)
    private, public = PrivateServer(desk, channels), PublicServer(desk, channels)
    await private.start()
    await public.start()
    settings.dump_dir.mkdir(parents=True, exist_ok=True)  # DUMPLOG's files
    daytrade = DayTradeServer(desk, settings, gateway)
    await daytrade.start()
    ticker = Ticker(desk, settings.tick_ms / 1000)
    http = uvicorn.Server(
        uvicorn.Config(
            create_app(desk, gateway),
            host=gateway.http_host,
            port=gateway.http_port,
            log_level="warning",
            lifespan="off",
            ws_max_size=64 * 1024,
        )
    )
    http.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  # ours, below
    sockets = [_shared_socket(gateway.http_host, gateway.http_port)] if gateway.reuse_port else None
    http_task = asyncio.create_task(http.serve(sockets=sockets), name="http")
    while not http.started:
        if http_task.done():
            await http_task
            raise RuntimeError("the HTTP server did not start")
        await asyncio.sleep(0.02)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tune_for_service()  # full collections stopped the loop for 50-77 ms: the p99
    # a stop while still waiting (its broker or projector gone) is honoured: a gateway stuck here
    # once ignored SIGTERM for 25 minutes (docs/reliability.md)
    if await _until_ready(desk, stop):
        await _live(desk, channels, settings, gateway, ticker, stop)
    http.should_exit = True
    await ticker.stop()
    await daytrade.stop()
    await private.stop()
    await public.stop()
    await xml.stop()
    await http_task
    await desk.stop()


async def _live(
    desk: Desk,
    channels: ChannelSettings,
    settings: Settings,
    gateway: GatewaySettings,
    ticker: Ticker,
    stop: asyncio.Event,
) -> None:
    """Ready: say so, and serve until told to stop."""
    await list_default_symbol(desk, channels)
    log.info(
        "channels: private on %s:%d, public on %s:%d, default symbol %s",
        channels.host,
        channels.private_port,
        channels.host,
        channels.public_port,
        channels.default_symbol,
    )
    if settings.instance == "0":  # one ticker per exchange, however many gateways run
        ticker.start()
    settings.mark_ready("gateway")
    log.info(
        "gateway %s: XML on %s:%d, HTTP on %s:%d, day trading on %s:%d",
        desk.instance_id,
        gateway.xml_host,
        gateway.xml_port,
        gateway.http_host,
        gateway.http_port,
        settings.daytrade_host,
        settings.daytrade_port,
    )
    await stop.wait()


async def _until_ready(desk: Desk, stop: asyncio.Event) -> bool:
    """Live means a write can be answered and read back (what /ready says): `make up` waits.
    False if told to stop first."""
    said = None
    while not stop.is_set() and (waiting := desk.waiting_for()):
        if waiting != said:
            log.info("gateway waiting for %s", "; ".join(waiting))
            said = waiting
        await asyncio.sleep(0.05)
    return not stop.is_set()


def main() -> None:
    _raise_fd_limit()
    try:
        import uvloop

        uvloop.run(serve(Settings(), GatewaySettings()))
    except ImportError:
        asyncio.run(serve(Settings(), GatewaySettings()))
