"""Gateway settings from the environment (the shared ones come from services.common.config)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _float(name: str, default: float) -> float:
    return float(_env(name, str(default)))


def _int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def reuse_port() -> bool:
    """MARKETLOG_GATEWAY_REUSE_PORT=1: listen with SO_REUSEPORT (several gateways, one address)."""
    return _env("MARKETLOG_GATEWAY_REUSE_PORT", "0") == "1"


@dataclass(frozen=True)
class GatewaySettings:
    xml_host: str = field(default_factory=lambda: _env("MARKETLOG_XML_HOST", "127.0.0.1"))
    xml_port: int = field(default_factory=lambda: _int("MARKETLOG_XML_PORT", 12345))
    http_host: str = field(default_factory=lambda: _env("MARKETLOG_HTTP_HOST", "127.0.0.1"))
    http_port: int = field(default_factory=lambda: _int("MARKETLOG_HTTP_PORT", 8080))
    admin_key: str = field(default_factory=lambda: os.environ.get("MARKETLOG_ADMIN_KEY", ""))
    # a write answers from its decision; past this the caller gets a timeout error
    decision_timeout: float = field(
        default_factory=lambda: _float("MARKETLOG_DECISION_TIMEOUT", 10.0)
    )
    # a read after a write waits at most this long for the projection to catch up
    projection_timeout: float = field(
        default_factory=lambda: _float("MARKETLOG_PROJECTION_TIMEOUT", 10.0)
    )
    max_body: int = field(default_factory=lambda: _int("MARKETLOG_XML_MAX_BYTES", 1 << 20))
    max_children: int = field(default_factory=lambda: _int("MARKETLOG_XML_MAX_CHILDREN", 1000))
    # seconds a client may take to send the body its length line announced
    body_timeout: float = field(default_factory=lambda: _float("MARKETLOG_XML_BODY_TIMEOUT", 10.0))
    idle_timeout: float = field(default_factory=lambda: _float("MARKETLOG_XML_IDLE_TIMEOUT", 600.0))
    framed_replies: bool = field(
        default_factory=lambda: _env("MARKETLOG_XML_FRAMED_REPLIES", "0") == "1"
    )
    max_connections: int = field(
        default_factory=lambda: _int("MARKETLOG_XML_MAX_CONNECTIONS", 10_000)
    )
    # several gateways on one host share each port (SO_REUSEPORT: the kernel spreads the
    # connections); each answers its own clients from the decisions addressed to it
    reuse_port: bool = field(default_factory=reuse_port)
    # requests of one XML connection read and not yet answered; past it the server stops reading
    xml_max_inflight: int = field(
        default_factory=lambda: max(1, _int("MARKETLOG_XML_MAX_INFLIGHT", 1000))
    )
    # token buckets: requests per second and burst, per XML connection and per API key / IP
    conn_rate: float = field(default_factory=lambda: _float("MARKETLOG_XML_RATE", 200.0))
    conn_burst: float = field(default_factory=lambda: _float("MARKETLOG_XML_BURST", 400.0))
    key_rate: float = field(default_factory=lambda: _float("MARKETLOG_HTTP_RATE", 200.0))
    key_burst: float = field(default_factory=lambda: _float("MARKETLOG_HTTP_BURST", 400.0))
    http_max_body: int = field(default_factory=lambda: _int("MARKETLOG_HTTP_MAX_BYTES", 64 * 1024))
    db_pool_max: int = field(default_factory=lambda: _int("MARKETLOG_GATEWAY_DB_POOL", 10))
    # the day-trading line protocol (address and quote/tick/dump settings: services.common.config)
    daytrade_idle_timeout: float = field(
        default_factory=lambda: _float("MARKETLOG_DAYTRADE_IDLE_TIMEOUT", 600.0)
    )
    # lines of one connection read but not yet answered; past it the server stops reading
    daytrade_max_inflight: int = field(
        default_factory=lambda: _int("MARKETLOG_DAYTRADE_MAX_INFLIGHT", 256)
    )
    daytrade_max_connections: int = field(
        default_factory=lambda: _int("MARKETLOG_DAYTRADE_MAX_CONNECTIONS", 10_000)
    )
    # one quote-server request (connect, ask, answer) before the command is quote_unavailable
    quote_timeout: float = field(default_factory=lambda: _float("MARKETLOG_QUOTE_TIMEOUT", 5.0))


@dataclass(frozen=True)
class ChannelSettings:
    """The algorithmic traders' JSON-lines channels (docs/channels.md)."""

    host: str = field(default_factory=lambda: _env("MARKETLOG_CHANNEL_HOST", "127.0.0.1"))
    reuse_port: bool = field(default_factory=reuse_port)
    private_port: int = field(default_factory=lambda: _int("MARKETLOG_PRIVATE_PORT", 7001))
    # a private connection sent nothing this many seconds is sent {"message":"heartbeat"}; 0: never
    private_heartbeat: float = field(
        default_factory=lambda: _float("MARKETLOG_CHANNEL_HEARTBEAT_S", 30.0)
    )
    public_port: int = field(default_factory=lambda: _int("MARKETLOG_PUBLIC_PORT", 7002))
    # the book of a request without "symbol"; listed when the gateway starts
    default_symbol: str = field(default_factory=lambda: _env("MARKETLOG_DEFAULT_SYMBOL", "WOOD"))
    # a connection without login trades as a fresh account with this cash and these shares
    cash: str = field(default_factory=lambda: _env("MARKETLOG_CHANNEL_CASH", "1000000"))
    shares: str = field(default_factory=lambda: _env("MARKETLOG_CHANNEL_SHARES", "10000"))
    cancel_on_disconnect: bool = field(
        default_factory=lambda: _env("MARKETLOG_CHANNEL_CANCEL_ON_DISCONNECT", "0") == "1"
    )
    max_line: int = field(default_factory=lambda: _int("MARKETLOG_CHANNEL_MAX_LINE", 4096))
    rate: float = field(default_factory=lambda: _float("MARKETLOG_CHANNEL_RATE", 1000.0))
    burst: float = field(default_factory=lambda: _float("MARKETLOG_CHANNEL_BURST", 2000.0))
    # an idle public connection is sent a heartbeat this often (the private one: private_heartbeat)
    heartbeat: float = field(default_factory=lambda: _float("MARKETLOG_CHANNEL_HEARTBEAT", 5.0))
    idle_timeout: float = field(
        default_factory=lambda: _float("MARKETLOG_CHANNEL_IDLE_TIMEOUT", 3600.0)
    )
    max_connections: int = field(
        default_factory=lambda: _int("MARKETLOG_CHANNEL_MAX_CONNECTIONS", 10_000)
    )
    # bytes a slow reader may leave unread before its connection is closed
    max_backlog: int = field(default_factory=lambda: _int("MARKETLOG_CHANNEL_MAX_BACKLOG", 8 << 20))
