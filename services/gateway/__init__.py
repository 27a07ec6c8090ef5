"""The gateway: XML over TCP and HTTP/WebSocket in front of the log (see docs/gateway.md)."""
