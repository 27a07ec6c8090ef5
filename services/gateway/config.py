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
    # token buckets: requests per second and burst, per XML connection and per API key / IP
    conn_rate: float = field(default_factory=lambda: _float("MARKETLOG_XML_RATE", 200.0))
    conn_burst: float = field(default_factory=lambda: _float("MARKETLOG_XML_BURST", 400.0))
    key_rate: float = field(default_factory=lambda: _float("MARKETLOG_HTTP_RATE", 200.0))
    key_burst: float = field(default_factory=lambda: _float("MARKETLOG_HTTP_BURST", 400.0))
    http_max_body: int = field(default_factory=lambda: _int("MARKETLOG_HTTP_MAX_BYTES", 64 * 1024))
    db_pool_max: int = field(default_factory=lambda: _int("MARKETLOG_GATEWAY_DB_POOL", 10))
