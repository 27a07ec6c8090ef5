"""DUMPLOG: the day-trading audit log as an XML file valid against the course's logfile.xsd.

The projector writes one ``audit_entries`` row per logfile.xsd entry (docs/projector.md); this
module only reads that table, never the projector's code. ``write_dumplog`` streams the rows in
DUMPLOG order through a server-side cursor (a 100,000-command log never sits in memory), renders
each as one line of XML, writes a temporary file in the dump directory and renames it over the
target, so a reader never sees half a file. ``safe_name`` turns the client's file name into the
base name written (docs/daytrading.md, *Commands*: the filename rule).

Layout: ``<?xml version="1.0"?>``, ``<log>``, then one entry per line indented by two spaces,
its elements in the order of the XSD's declaration, then ``</log>``; UTF-8, ending in a newline.
Timestamps are Unix ms, money has exactly two decimals (an amount finer than a cent, which the
day-trading commands cannot make, would be written exactly rather than rounded).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from services.common.workload import MAX_LINE, parse_filename

# audit_entries.kind -> the element, and the role that made the entry (docs/daytrading.md)
ELEMENTS = ("userCommand", "quoteServer", "accountTransaction", "systemEvent", "errorEvent")
SERVERS = ("gateway", "gateway", "ledger", "ledger", "ledger")
QUOTE_SERVER, ACCOUNT_TRANSACTION, ERROR_EVENT = 1, 2, 4
HEADER = b'<?xml version="1.0"?>\n<log>\n'
FOOTER = b"</log>\n"
FETCH_ROWS = 2000  # rows per round trip of the server-side cursor (~10 ms of rendering)

_PRINTABLE = re.compile(r"[\x20-\x7e]*")
# text content: markup characters escaped; tab, LF, CR as character references (one entry per
# line); the other C0 controls, which XML 1.0 cannot carry at all, as spaces
_ESCAPE = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
    | {chr(c): f"&#{c};" for c in (9, 10, 13)}
    | {chr(c): " " for c in range(32) if c not in (9, 10, 13)}
)

_COLUMNS = (
    "ts_ms, txn, kind, username, command, stock_symbol, funds, price, quote_server_time,"
    " cryptokey, action, filename, error_message"
)
_ORDER = "(ts_ms, txn, kind, src_partition, src_offset)"  # the DUMPLOG order = primary key


def safe_name(filename: str) -> str:
    """The base name a DUMPLOG writes for the client's file name (``./testLOG`` -> ``testLOG``).

    The rule (docs/daytrading.md): a relative path of printable ASCII whose last part is 1-128
    of ``A-Z a-z 0-9 . _ -`` not starting with ``.``; no ``..`` part, no leading ``/``, no
    backslash. Only the last part is used, so the file always lands in the dump directory.
    Anything else raises ValueError saying why."""
    if not isinstance(filename, str):
        raise ValueError("filename must be text")
    if len(filename) > MAX_LINE:
        raise ValueError(f"filename is longer than {MAX_LINE} characters")
    if not _PRINTABLE.fullmatch(filename):
        raise ValueError(f"filename {filename[:60]!r} must be printable ASCII")
    parse_filename(filename)  # the line protocol's own rule: raises ValueError with the reason
    return filename.rsplit("/", 1)[-1]


def _money(cash: int) -> str:
    """Cash units as dollars with two decimals (1 cent = 10,000 units); exact if finer."""
    sign = "-" if cash < 0 else ""
    cents, finer = divmod(abs(cash), 10_000)
    if not finer:
        return f"{sign}{cents // 100}.{cents % 100:02d}"
    whole, frac = divmod(abs(cash), 1_000_000)
    return f"{sign}{whole}.{frac:06d}".rstrip("0")


def _price(units: int) -> str:
    """Price units as dollars with two decimals (1 cent = 100 units); exact if finer."""
    return _money(units * 100)


def _text(value: str) -> str:
    return value.translate(_ESCAPE)


def render(row: tuple) -> str:
    """One audit_entries row (``_COLUMNS``) as one line of XML, elements in XSD order."""
    (ts_ms, txn, kind, user, command, symbol, funds, price, quote_time, key, action, filename,
     message) = row  # fmt: skip
    name = ELEMENTS[kind]
    parts = [
        f"  <{name}><timestamp>{ts_ms}</timestamp><server>{SERVERS[kind]}</server>"
        f"<transactionNum>{txn}</transactionNum>"
    ]
    if kind == QUOTE_SERVER:
        parts.append(
            f"<price>{_price(price)}</price><stockSymbol>{_text(symbol)}</stockSymbol>"
            f"<username>{_text(user)}</username><quoteServerTime>{quote_time}</quoteServerTime>"
            f"<cryptokey>{_text(key)}</cryptokey>"
        )
    elif kind == ACCOUNT_TRANSACTION:
        parts.append(
            f"<action>{action}</action><username>{_text(user)}</username>"
            f"<funds>{_money(funds)}</funds>"
        )
    else:  # userCommand, systemEvent, errorEvent: command, then the optional fields
        parts.append(f"<command>{command}</command>")
        if user is not None:
            parts.append(f"<username>{_text(user)}</username>")
        if symbol is not None:
            parts.append(f"<stockSymbol>{_text(symbol)}</stockSymbol>")
        if filename is not None:
            parts.append(f"<filename>{_text(filename)}</filename>")
        if funds is not None:
            parts.append(f"<funds>{_money(funds)}</funds>")
        if kind == ERROR_EVENT and message is not None:
            parts.append(f"<errorMessage>{_text(message)}</errorMessage>")
    parts.append(f"</{name}>\n")
    return "".join(parts)


async def _cutoff(conn, user: str | None, until: tuple[int, int]) -> tuple:
    """The DUMPLOG order key of the userCommand entry of the decision at ``until``."""
    who = "username IS NULL" if user is None else "username = %s"
    params = ([] if user is None else [user]) + list(until)
    cur = await conn.execute(
        f"SELECT ts_ms, txn, kind, src_partition, src_offset FROM audit_entries"
        f" WHERE {who} AND src_partition = %s AND src_offset = %s AND kind = 0",
        params,
    )
    found = await cur.fetchone()
    if found is None:
        raise LookupError(f"no DUMPLOG entry projected at account.events {until} for {user!r}")
    return tuple(found)


async def write_dumplog(
    pool: AsyncConnectionPool,
    user: str | None,
    dump_dir: Path,
    filename: str,
    *,
    until: tuple[int, int] | None = None,
) -> tuple[str, Path, int]:
    """Render the audit log to ``dump_dir / safe_name(filename)``; (name, path, byte length).

    ``user`` None: the admin log (every entry); otherwise the entries whose username is
    ``user``. ``until``: the (partition, offset) on account.events of the DUMPLOG's own decision;
    the file then ends with that DUMPLOG's userCommand, leaving out anything ordered after it
    (later commands that happen to be projected already). Without it, every projected entry.
    The pool's connections must have ``search_path`` = the projection schema."""
    name = safe_name(filename)
    dump_dir = Path(dump_dir)
    dump_dir.mkdir(parents=True, exist_ok=True)
    target = dump_dir / name
    if target.resolve().parent != dump_dir.resolve():  # e.g. a symlink planted in the dir
        raise ValueError(f"filename {filename[:60]!r} does not stay in the dump directory")
    where, params = [], []
    if user is not None:
        where.append("username = %s")
        params.append(user)
    async with pool.connection() as conn:
        if until is not None:
            where.append(f"{_ORDER} <= (%s, %s, %s, %s, %s)")
            params += await _cutoff(conn, user, until)
        query = (
            f"SELECT {_COLUMNS} FROM audit_entries"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY ts_ms, txn, kind, src_partition, src_offset"
        )
        fd, tmp = tempfile.mkstemp(dir=dump_dir, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(HEADER)
                async with conn.transaction(), conn.cursor(name="dumplog") as cur:
                    await cur.execute(query, params)
                    while rows := await cur.fetchmany(FETCH_ROWS):
                        out.write("".join(map(render, rows)).encode())
                out.write(FOOTER)
                size = out.tell()
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return name, target, size
