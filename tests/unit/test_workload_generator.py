"""The workload generator (services/workload) against an in-test asyncio line server: a test
double of the gateway's day-trading line protocol (docs/daytrading.md, *Line protocol*) that
answers every line in order, after an optional delay, and records what it saw."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from services.common.config import ROOT
from services.common.workload import WorkloadError, parse_line
from services.workload.__main__ import main
from services.workload.replay import ADMIN, UNKNOWN_USER, load, parse_answer, replay

WORKLOADS = ROOT / "tests" / "data" / "seng468" / "workloads"


class LineServer:
    """Answers ``[N] OK,COMMAND`` for every line the shared parser accepts, ``[N] ERROR,…,
    bad_input,…`` otherwise; DUMPLOG answers carry ``payload``. Knobs make it misbehave."""

    def __init__(
        self,
        delay: float = 0.0,
        payload: bytes = b"<?xml version='1.0'?>\n<log>\n</log>\n",
        close_after: int | None = None,
        wrong_echo_on: str | None = None,
        malformed_on: str | None = None,
        silent_on: str | None = None,
    ) -> None:
        self.delay, self.payload = delay, payload
        self.close_after = close_after
        self.wrong_echo_on, self.malformed_on, self.silent_on = (
            wrong_echo_on,
            malformed_on,
            silent_on,
        )
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: set[asyncio.Task] = set()
        self.events: list[tuple[str, int | None, str]] = []  # ("recv"|"answer", txn, user)
        self.lines: list[tuple[int, str]] = []  # (connection, line text)
        self.user_flight: Counter = Counter()
        self.max_user_flight: Counter = Counter()
        self.flight = self.max_flight = 0
        self.answered = 0
        self.next_txn = 10**9

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, backlog=2048)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=5)
        await self.server.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        me = self.connections
        self.writers.append(writer)
        self.handlers.add(asyncio.current_task())
        queue: asyncio.Queue = asyncio.Queue()

        async def read() -> None:
            while raw := await reader.readline():
                text = raw.decode("ascii", "replace").rstrip("\n")
                self.lines.append((me, text))
                try:
                    command = parse_line(text)
                    user = command.user or ADMIN
                except WorkloadError as exc:
                    command, user = exc, exc.user or UNKNOWN_USER
                txn = command.txn
                self.events.append(("recv", txn, user))
                self.user_flight[user] += 1
                self.max_user_flight[user] = max(self.max_user_flight[user], self.user_flight[user])
                self.flight += 1
                self.max_flight = max(self.max_flight, self.flight)
                await queue.put((command, user))
            await queue.put(None)

        reading = asyncio.create_task(read())
        try:
            while (item := await queue.get()) is not None:
                command, user = item
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.user_flight[user] -= 1
                self.flight -= 1
                name = command.command if isinstance(command, WorkloadError) else command.name
                if self.silent_on is not None and name == self.silent_on:
                    continue
                writer.write(self.answer(command))
                self.events.append(("answer", command.txn, user))
                self.answered += 1
                await writer.drain()
                if self.close_after is not None and self.answered >= self.close_after:
                    break
        finally:
            reading.cancel()
            writer.close()

    def answer(self, command) -> bytes:
        if isinstance(command, WorkloadError):
            name = command.command or "?"
            txn = command.txn or 0
            return f"[{txn}] ERROR,{name},bad_input,{command}\n".encode()
        if command.txn is None:
            self.next_txn += 1
        txn = command.txn or self.next_txn
        if command.name == self.wrong_echo_on:
            txn += 1
        if command.name == self.malformed_on:
            return b"hello there\n"
        if command.name == "DUMPLOG":
            head = f"[{txn}] OK,DUMPLOG,{command.dump_name},{len(self.payload)}\n".encode()
            return head + self.payload
        return f"[{txn}] OK,{command.name}\n".encode()


def users_workload(users: int, per_user: list[str], dumplog: bool = True) -> str:
    """Round-robin interleaving of ``users`` users, each running ``per_user`` (with {u})."""
    lines = []
    for step in per_user:
        for i in range(users):
            lines.append(step.format(u=f"user{i:04d}"))
    if dumplog:
        lines.append("DUMPLOG,./testLOG")
    return "".join(f"[{n}] {line} \n" for n, line in enumerate(lines, 1))


STEPS = ["ADD,{u},100.00", "QUOTE,{u},ABC", "BUY,{u},ABC,10.00", "COMMIT_BUY,{u}"]


def run(server: LineServer, text: str, **options) -> tuple:
    async def go():
        port = await server.start()
        try:
            plan = load(text, options.pop("dumplog", None))
            report = await replay(plan, "127.0.0.1", port, **options)
        finally:
            await server.stop()
        return plan, report

    return asyncio.run(go())


def per_user_order(server: LineServer) -> dict[str, list[int]]:
    seen = defaultdict(list)
    for kind, txn, user in server.events:
        if kind == "recv":
            seen[user].append(txn)
    return seen


# -- order and concurrency -----------------------------------------------------------------
def test_each_user_keeps_its_order_and_all_users_run_at_once():
    server = LineServer(delay=0.02)
    text = users_workload(200, STEPS)
    _plan, report = run(server, text)
    assert report.complete, report.text()
    assert (report.commands, report.answered, report.ok) == (801, 801, 801)
    assert server.connections == 201  # one per user and one for the admin DUMPLOG
    for user, txns in per_user_order(server).items():
        assert txns == sorted(txns), user
        assert server.max_user_flight[user] == 1, user  # the next line waits for the answer
    assert server.max_flight >= 150  # the users really were concurrent
    assert report.seconds < 8  # one by one it would take 801 × 0.02 = 16 s


def test_a_thousand_users():
    server = LineServer()
    _plan, report = run(server, users_workload(1000, STEPS[:2]))
    assert report.complete, report.text()
    assert report.users == 1000 and server.connections == 1001
    assert report.answered == 2001


def test_users_can_share_connections():
    server = LineServer(delay=0.002)
    _plan, report = run(server, users_workload(50, STEPS), connections=7)
    assert report.complete, report.text()
    assert server.connections == 8 and report.connections == 7
    for user, txns in per_user_order(server).items():
        assert txns == sorted(txns), user
        assert server.max_user_flight[user] == 1
    by_conn = defaultdict(set)
    for conn, text in server.lines:
        if "DUMPLOG" not in text:
            by_conn[conn].add(parse_line(text).user)
    assert len(by_conn) == 7
    users_seen = [u for users in by_conn.values() for u in users]
    assert len(users_seen) == len(set(users_seen)) == 50  # each user on one connection


def test_a_window_lets_a_user_pipeline_in_order():
    server = LineServer(delay=0.01)
    _plan, report = run(server, users_workload(3, STEPS * 3, dumplog=False), window=3)
    assert report.complete, report.text()
    for user, txns in per_user_order(server).items():
        assert txns == sorted(txns)
        assert server.max_user_flight[user] == 3


def test_an_admin_dumplog_is_a_barrier():
    text = "".join(
        f"[{n}] {line}\n"
        for n, line in enumerate(
            ["ADD,a,1.00", "ADD,b,1.00", "QUOTE,a,S", "DUMPLOG,./mid", "QUOTE,b,S", "QUOTE,a,S"],
            1,
        )
    )
    server = LineServer(delay=0.01)
    plan, report = run(server, text)
    assert report.complete and len(plan.phases) == 2
    events = server.events
    dump_recv = events.index(("recv", 4, ADMIN))
    dump_answer = events.index(("answer", 4, ADMIN))
    assert all(
        events.index(("answer", n, u)) < dump_recv for n, u in [(1, "a"), (2, "b"), (3, "a")]
    )
    assert all(events.index(("recv", n, u)) > dump_answer for n, u in [(5, "b"), (6, "a")])


# -- what is sent --------------------------------------------------------------------------
def test_lines_are_sent_with_their_number_and_refused_ones_too():
    text = "ADD,a,1.00 \n\n[7] QUOTE,a,S\nADD,a,-5.00\nHELLO\n[x] ADD,a,1\n"
    server = LineServer()
    plan, report = run(server, text)
    sent = sorted(text for _, text in server.lines)
    assert sent == sorted(
        ["[1] ADD,a,1.00", "[7] QUOTE,a,S", "[4] ADD,a,-5.00", "[5] HELLO", "[x] ADD,a,1"]
    )
    assert report.complete, report.text()
    assert report.refused_by_parser == 3
    assert report.errors == Counter({"bad_input": 3}) and report.ok == 2
    assert set(plan.users) == {"a", UNKNOWN_USER}


def test_the_ten_user_course_file_replays_completely():
    server = LineServer()
    text = (WORKLOADS / "10User_testWorkLoad").read_text()
    _plan, report = run(server, text)
    assert report.complete, report.text()
    assert (report.commands, report.answered, report.users) == (10_000, 10_000, 10)
    assert report.errors == Counter({"bad_input": 1})  # the negative ADD, line 9962
    assert [t for _, t in server.lines if t.startswith("[9962]")] == [
        "[9962] ADD,umhaEY4lil,-73280.58"
    ]


# -- DUMPLOG bytes -------------------------------------------------------------------------
def test_dumplog_bytes_go_to_the_path(tmp_path):
    payload = bytes(range(256)) * 12_000 + b"\n"  # 3 MB, several reads
    server = LineServer(payload=payload)
    out = tmp_path / "dump.xml"
    plan, report = run(server, users_workload(5, STEPS), dumplog=out)
    assert report.complete, report.text()
    assert not plan.added_dumplog
    assert out.read_bytes() == payload
    assert (report.dumplog_path, report.dumplog_bytes) == (str(out), len(payload))
    assert server.lines[-1][1] == "[21] DUMPLOG,./testLOG"  # the file's own line


def test_dumplog_is_added_when_the_file_has_none(tmp_path):
    server = LineServer()
    out = tmp_path / "mine.xml"
    plan, report = run(server, users_workload(2, STEPS, dumplog=False), dumplog=out)
    assert report.complete and plan.added_dumplog
    assert report.commands == 9
    assert server.lines[-1][1] == "[9] DUMPLOG,mine.xml"
    assert out.read_bytes() == server.payload


def test_dumplog_bytes_are_read_and_dropped_without_the_option():
    server = LineServer(payload=b"x" * 100_000)
    text = users_workload(2, STEPS[:1], dumplog=False) + "[3] DUMPLOG,a\n[4] QUOTE,user0000,S\n"
    _plan, report = run(server, text)
    assert report.complete, report.text()  # the answer after the bytes was read correctly


# -- the report ----------------------------------------------------------------------------
def test_the_report():
    server = LineServer(delay=0.001)
    text = users_workload(10, STEPS) + "[42] ADD,u,1.001\n"
    _plan, report = run(server, text)
    assert report.complete
    data = report.as_dict()
    assert data["commands"] == data["answered"] == 42
    assert data["errors"] == {"bad_input": 1} and data["ok"] == 41
    assert data["commands_per_second"] > 0
    assert set(data["latency_us"]) == {"p50", "p90", "p99", "p99.9", "max"}
    assert 1000 <= data["latency_us"]["p50"] <= data["latency_us"]["max"]
    text_report = report.text()
    assert "commands/s" in text_report and "latency ms: p50" in text_report
    assert "bad_input 1" in text_report


def test_answer_lines():
    ok = parse_answer(b"[3] OK,BUY,S,2,138.41,276.82\n")
    assert (ok.txn, ok.ok, ok.command, ok.fields) == (
        3,
        True,
        "BUY",
        ["S", "2", "138.41", "276.82"],
    )
    error = parse_answer(b"[5] ERROR,COMMIT_SELL,no_pending_sell,no SELL, at all\r\n")
    assert (error.ok, error.code, error.fields) == (False, "no_pending_sell", ["no SELL, at all"])
    assert parse_answer(b"[0] ERROR,?,bad_input,unknown command 'X'\n").command == "?"


# -- failures: exit status non-zero ------------------------------------------------------------
def test_nothing_listening():
    async def go():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        return await replay(load(users_workload(2, STEPS)), "127.0.0.1", port)

    report = asyncio.run(go())
    assert not report.complete and report.answered == 0
    assert "cannot connect" in report.failures[0]


@pytest.mark.parametrize(
    ("knobs", "why"),
    [
        ({"close_after": 5}, "closed the connection"),
        ({"wrong_echo_on": "BUY"}, "answer for ["),
        ({"malformed_on": "COMMIT_BUY"}, "malformed answer"),
        ({"silent_on": "QUOTE"}, "no answer to ["),
    ],
)
def test_a_misbehaving_server_fails_the_run(knobs, why):
    server = LineServer(**knobs)
    started = time.perf_counter()
    _plan, report = run(server, users_workload(3, STEPS), timeout=0.5)
    assert not report.complete
    assert report.unanswered > 0
    assert any(why in failure for failure in report.failures), report.failures
    assert time.perf_counter() - started < 10


# -- the command line ----------------------------------------------------------------------
class ThreadServer:
    """The LineServer in a thread of its own, for main(), which runs its own event loop."""

    def __init__(self, server: LineServer) -> None:
        self.server = server
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.port = self.loop.run_until_complete(self.server.start())
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self) -> int:
        self.thread.start()
        assert self.ready.wait(10)
        return self.port

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_the_command_line(tmp_path, capsys):
    workload = tmp_path / "w.txt"
    workload.write_text(users_workload(4, STEPS))
    server = LineServer()
    with ThreadServer(server) as port:
        status = main(
            [
                str(workload),
                "--port",
                str(port),
                "--no-progress",
                "--json",
                str(tmp_path / "r.json"),
                "--dumplog",
                str(tmp_path / "d.xml"),
            ]
        )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "17 commands, 4 users" in out and "commands/s" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["complete"] and report["answered"] == 17
    assert (tmp_path / "d.xml").read_bytes() == server.payload


def test_the_command_line_fails_without_a_server(tmp_path, capsys, monkeypatch):
    workload = tmp_path / "w.txt"
    workload.write_text(users_workload(1, STEPS))
    server = LineServer()
    with ThreadServer(server) as port:
        pass  # now closed
    monkeypatch.setenv("MARKETLOG_DAYTRADE_PORT", str(port))
    assert main([str(workload), "--no-progress"]) == 1
    assert "cannot connect" in capsys.readouterr().out
    assert main([str(tmp_path / "missing"), "--no-progress"]) == 1


def test_the_plan_of_a_course_file():
    plan = load((WORKLOADS / "45User_testWorkLoad").read_text(), Path("x.xml"))
    assert plan.total == 10_000 and len(plan.users) == 45 and plan.refused == 0
    assert len(plan.phases) == 1 and plan.phases[0].barrier.txn == 10_000
    assert plan.phases[0].barrier.sink == Path("x.xml")
    assert sum(len(lines) for lines in plan.phases[0].users.values()) == 9_999
