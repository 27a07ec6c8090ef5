"""The day-trading command line: the course's workload format, which is also the line protocol.

A line is ``[N] COMMAND,userid,args`` (docs/daytrading.md, *Commands* and *Line protocol*): an
optional ``[N] `` prefix giving the transaction number, the command word, then comma-separated
fields. Shared by the gateway's line protocol (port 12346) and the workload generator
(``python -m services.workload``), so both accept and refuse exactly the same lines.

Pure: no I/O. Money is parsed to integer cents without floats; an amount with more than two
significant decimals, a sign, zero, or more than ten digits before the point is refused with a
message that says why. Every refusal is a :class:`WorkloadError` carrying what could be read of
the line (transaction number, command, user), so an error answer can still name them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LINE = 1024  # characters of one line, without its line end
MAX_TXN = 2**63 - 1  # a transaction number is an Avro long
MAX_WHOLE_DIGITS = 10  # at most 9,999,999,999.99 dollars: ×10**4 cash units stays far below 2**63
MAX_FILENAME = 128

# the argument names of each command after the userid (docs/daytrading.md, *Commands*)
ARGS: dict[str, tuple[str, ...]] = {
    "ADD": ("amount",),
    "QUOTE": ("symbol",),
    "BUY": ("symbol", "amount"),
    "COMMIT_BUY": (),
    "CANCEL_BUY": (),
    "SELL": ("symbol", "amount"),
    "COMMIT_SELL": (),
    "CANCEL_SELL": (),
    "SET_BUY_AMOUNT": ("symbol", "amount"),
    "CANCEL_SET_BUY": ("symbol",),
    "SET_BUY_TRIGGER": ("symbol", "price"),
    "SET_SELL_AMOUNT": ("symbol", "amount"),
    "SET_SELL_TRIGGER": ("symbol", "price"),
    "CANCEL_SET_SELL": ("symbol",),
    # DUMPLOG,userid,filename; the admin form DUMPLOG,filename has no userid
    "DUMPLOG": ("filename",),
    "DISPLAY_SUMMARY": (),
}
COMMANDS = frozenset(ARGS)

_PREFIX = re.compile(r"\[([^\]]*)\][ \t]*")
_DIGITS = re.compile(r"[0-9]{1,19}")
_USER = re.compile(r"[A-Za-z0-9_-]{1,32}")
_SYMBOL = re.compile(r"[A-Z]{1,3}")
_AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]+))?")
_BASENAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_PARENT = re.compile(r"(?:^|/)\.\.(?:/|$)")  # a parent-directory part of a path


class WorkloadError(ValueError):
    """A line that is not a valid command. ``txn``, ``command`` and ``user`` are whatever could
    be read before the problem (None otherwise); the message is for the client."""

    def __init__(
        self,
        message: str,
        *,
        txn: int | None = None,
        command: str | None = None,
        user: str | None = None,
    ) -> None:
        super().__init__(message)
        self.txn = txn
        self.command = command
        self.user = user


@dataclass(frozen=True, slots=True)
class Command:
    """One valid command. ``amount`` is in cents: the dollar amount of ADD, BUY, SELL and the
    SET_*_AMOUNT commands, the trigger price of SET_BUY_TRIGGER / SET_SELL_TRIGGER. ``user`` is
    None only for the admin DUMPLOG; ``filename`` is the DUMPLOG file name as the client wrote
    it (``dump_name`` is the base name the server writes)."""

    name: str
    user: str | None
    symbol: str | None = None
    amount: int | None = None
    filename: str | None = None
    txn: int | None = None

    @property
    def admin(self) -> bool:
        return self.name == "DUMPLOG" and self.user is None

    @property
    def dump_name(self) -> str | None:
        return None if self.filename is None else self.filename.rsplit("/", 1)[-1]

    def text(self) -> str:
        """The canonical line, without prefix or line end (``ADD,alice,10.00``)."""
        fields = [self.name]
        if self.user is not None:
            fields.append(self.user)
        if self.symbol is not None:
            fields.append(self.symbol)
        if self.amount is not None:
            fields.append(format_cents(self.amount))
        if self.filename is not None:
            fields.append(self.filename)
        return ",".join(fields)

    def line(self) -> str:
        """The canonical line with its ``[N] `` prefix when it has a transaction number."""
        return self.text() if self.txn is None else f"[{self.txn}] {self.text()}"


def format_cents(cents: int) -> str:
    """Cents as dollars with exactly two decimals (``1234`` -> ``12.34``)."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def parse_amount(text: str, what: str = "amount") -> int:
    """A positive dollar amount with at most two significant decimals, in cents."""
    shown = text[:40]
    if text.startswith("-"):
        raise ValueError(f"{what} {shown!r} must not be negative")
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise ValueError(f"{what} {shown!r} is not a decimal number like 12.34")
    whole, frac = match.group(1), (match.group(2) or "").rstrip("0")
    if len(frac) > 2:
        raise ValueError(f"{what} {shown!r} has more than 2 decimal places")
    if len(whole.lstrip("0")) > MAX_WHOLE_DIGITS:
        raise ValueError(f"{what} {shown!r} is too large (at most 9999999999.99)")
    cents = int(whole) * 100 + int(frac.ljust(2, "0"))
    if cents == 0:
        raise ValueError(f"{what} must be greater than zero")
    return cents


def parse_symbol(text: str) -> str:
    if _SYMBOL.fullmatch(text):
        return text
    shown = text[:40]
    if len(text) > 3 and text.isascii() and text.isalpha():
        raise ValueError(f"symbol {shown!r} is longer than 3 letters")
    raise ValueError(f"symbol {shown!r} must be 1 to 3 capital letters A-Z")


def parse_user(text: str) -> str:
    if _USER.fullmatch(text):
        return text
    if not text:
        raise ValueError("userid must not be empty")
    raise ValueError(f"userid {text[:40]!r} must be 1 to 32 letters, digits, '_' or '-'")


def parse_filename(text: str) -> str:
    """A DUMPLOG file name: a relative path whose last part is a safe base name (``./testLOG``
    is fine and writes ``testLOG``); no ``..``, no absolute path, no backslash."""
    shown = text[:60]
    if not text:
        raise ValueError("filename must not be empty")
    if "\\" in text:
        raise ValueError(f"filename {shown!r} must not contain a backslash")
    if text.startswith("/"):
        raise ValueError(f"filename {shown!r} must not be an absolute path")
    parts = text.split("/")
    if _PARENT.search(text):
        raise ValueError(f"filename {shown!r} must not contain '..'")
    base = parts[-1]
    if not (_BASENAME.fullmatch(base) and len(base) <= MAX_FILENAME):
        raise ValueError(
            f"filename {shown!r} must end in a name of 1 to {MAX_FILENAME} letters, digits,"
            " '.', '_' or '-' (not starting with '.')"
        )
    return text


def parse_line(line: str) -> Command:
    """Parse one line (without or with its line end). Trailing spaces, tabs and CR are ignored
    (the course files end every line in a space); spaces around a field are ignored."""
    text = line.rstrip(" \t\r\n")
    if len(text) > MAX_LINE:
        raise WorkloadError(f"line longer than {MAX_LINE} characters")
    if not _PRINTABLE.fullmatch(text):
        raise WorkloadError("line is not printable ASCII text")
    text = text.lstrip(" \t")
    if not text:
        raise WorkloadError("empty line")
    txn = None
    if text.startswith("["):
        prefix = _PREFIX.match(text)
        if prefix is None:
            raise WorkloadError("transaction number prefix '[N] ' is not closed")
        digits = prefix.group(1).strip()
        if not _DIGITS.fullmatch(digits) or not 1 <= int(digits) <= MAX_TXN:
            raise WorkloadError(
                f"transaction number {prefix.group(1)[:30]!r} must be a positive integer"
            )
        txn = int(digits)
        text = text[prefix.end() :]
    fields = [field.strip(" \t") for field in text.split(",")]
    name = fields[0]
    if name not in COMMANDS:
        user = fields[1] if len(fields) > 1 and _USER.fullmatch(fields[1]) else None
        if not name:
            raise WorkloadError("missing command", txn=txn, user=user)
        if name.upper() in COMMANDS:
            message = f"command {name!r} must be written in capitals"
        else:
            message = f"unknown command {name[:40]!r}"
        raise WorkloadError(message, txn=txn, user=user)
    given = fields[1:]
    if name == "DUMPLOG" and len(given) == 1:  # the admin form: the whole system's log
        try:
            filename = parse_filename(given[0])
        except ValueError as exc:
            raise WorkloadError(str(exc), txn=txn, command=name) from None
        return Command(name, None, filename=filename, txn=txn)
    wanted = ("userid", *ARGS[name])
    user = None
    if given:
        try:
            user = parse_user(given[0])
        except ValueError as exc:
            raise WorkloadError(str(exc), txn=txn, command=name) from None
    if len(given) != len(wanted):
        usage = ",".join((name, *wanted))
        if name == "DUMPLOG":
            usage = "DUMPLOG,userid,filename or DUMPLOG,filename"
        raise WorkloadError(
            f"{name} takes {len(wanted)} argument{'s' if len(wanted) > 1 else ''} ({usage}),"
            f" got {len(given)}",
            txn=txn,
            command=name,
            user=user,
        )
    symbol = amount = filename = None
    try:
        for kind, value in zip(ARGS[name], given[1:], strict=True):
            if kind == "symbol":
                symbol = parse_symbol(value)
            elif kind == "amount":
                amount = parse_amount(value)
            elif kind == "price":
                amount = parse_amount(value, "trigger price")
            else:
                filename = parse_filename(value)
    except ValueError as exc:
        raise WorkloadError(str(exc), txn=txn, command=name, user=user) from None
    return Command(name, user, symbol, amount, filename, txn)


def parse_lines(text: str) -> list[Command | WorkloadError]:
    """Every non-blank line of a workload file, in order: a Command, or the WorkloadError that
    says why the line is not one (the course files contain such lines on purpose)."""
    out: list[Command | WorkloadError] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            out.append(parse_line(line))
        except WorkloadError as exc:
            out.append(exc)
    return out
