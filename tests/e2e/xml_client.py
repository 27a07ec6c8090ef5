"""A small XML/TCP client for the e2e tests, and the rewriting that lets a peer's scenario run in
a shared system: its account ids, symbols and order ids are mapped to fresh ones."""

from __future__ import annotations

import re
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


class XmlClient:
    def __init__(self, port: int, timeout: float = 30) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> XmlClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send(self, body: bytes) -> ET.Element:
        self.sock.sendall(b"%d\n%s" % (len(body), body))
        data = b""
        while b"</results>" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {data!r}")
            data += chunk
        return ET.fromstring(data)


def fresh_account() -> str:
    return str(uuid.uuid4().int)[:15]


def fresh_symbol(base: str = "S") -> str:
    return base[:8] + uuid.uuid4().hex[:8].upper()


@dataclass
class Scenario:
    """Maps a scenario's own names to fresh ones. Orders are numbered as the peer's server would
    have numbered them (``base``, base+1, … in the order they were opened) and a query or cancel
    of such a number is sent with the id our exchange gave that order."""

    base: int = 1
    accounts: dict[str, str] = field(default_factory=dict)
    symbols: dict[str, str] = field(default_factory=dict)
    orders: list[int] = field(default_factory=list)

    def account(self, name: str) -> str:
        if not name.isdigit():
            return name
        return self.accounts.setdefault(name, fresh_account())

    def symbol(self, name: str) -> str:
        if not name.isalnum():
            return name
        return self.symbols.setdefault(name, fresh_symbol(name))

    def order(self, logical: str) -> str:
        if not logical.isdigit():
            return logical
        index = int(logical) - self.base
        if 0 <= index < len(self.orders):
            return str(self.orders[index])
        return str(900_000_000_000_000 + int(logical))  # never opened: must be unknown

    def rewrite(self, body: bytes) -> bytes:
        """The request with every account, symbol and order id mapped (attributes only, so a
        malformed document stays exactly as malformed)."""
        text = body.decode("utf-8", "replace")
        text = re.sub(r'(<transactions[^>]*?\b(?:id|account)\s*=\s*")(\d+)"', self._acct, text)
        text = re.sub(r'(<account[^>]*?\bid\s*=\s*")(\d+)"', self._acct, text)
        text = re.sub(r'(\bsym\s*=\s*")([A-Za-z0-9]+)"', self._sym, text)
        text = re.sub(r'(<(?:query|cancel)[^>]*?\bid\s*=\s*")(\d+)"', self._order, text)
        return text.encode()

    def _acct(self, m: re.Match) -> str:
        return f'{m.group(1)}{self.account(m.group(2))}"'

    def _sym(self, m: re.Match) -> str:
        return f'{m.group(1)}{self.symbol(m.group(2))}"'

    def _order(self, m: re.Match) -> str:
        return f'{m.group(1)}{self.order(m.group(2))}"'

    def note(self, results: ET.Element) -> None:
        for child in results:
            if child.tag == "opened":
                self.orders.append(int(child.get("id", "0")))


def strip_peer_header(data: bytes) -> bytes:
    """Peer files sometimes start with their own (often wrong) byte count: drop it, the client
    frames each request itself."""
    first, _, rest = data.partition(b"\n")
    return rest if first.strip().isdigit() else data


def wait_for(predicate, timeout: float = 20, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(every)
