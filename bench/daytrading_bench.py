"""End to end: a course day-trading workload replayed through the line protocol (port 12346).

The whole system runs as processes against the bench broker and database (the quote server
included, with no artificial delay); the workload generator (services.workload) replays the
course's 100-user file (the 10-user file with --quick) closed-loop, one asyncio task per user,
every user at once, and reports commands/s and latency from send to answer (HdrHistogram). The
CPU each process spent per command and the VM's busy and stolen cores are metered over the
replay (bench/cpu.py). Beside it, in the summary, the XML figure of the same run (e2e_bench),
when that suite ran before.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from bench.cpu import CpuMeter, metered
from infra.stack import ServiceProcs, free_ports
from services.workload import replay as workload

SERVICES = ("projector", "ledger", "matcher", "quotes", "gateway")
DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "seng468" / "workloads"
FULL, QUICK_FILE = "100User_testWorkLoad", "10User_testWorkLoad"


async def drive(port: int, plan: workload.Plan, meter: CpuMeter, name: str) -> tuple:
    report_box: list[workload.Report] = []

    async def run() -> None:
        report_box.append(await workload.replay(plan, "127.0.0.1", port, name=name, timeout=300))

    cpu = await metered(meter, run())
    return report_box[0], cpu


def run(env) -> dict:
    name = QUICK_FILE if env.quick else FULL
    plan = workload.load((DATA / name).read_text())
    settings = env.settings(partitions=4)
    logs = env.home / "logs" / "daytrading"
    logs.mkdir(parents=True, exist_ok=True)
    names = ("xml", "http", "quotes", "daytrade")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    procs = ServiceProcs(
        settings,
        logs,
        MARKETLOG_XML_PORT=str(ports["xml"]),
        MARKETLOG_HTTP_PORT=str(ports["http"]),
        MARKETLOG_QUOTE_PORT=str(ports["quotes"]),
        MARKETLOG_DAYTRADE_PORT=str(ports["daytrade"]),
        MARKETLOG_DUMP_DIR=str(env.home / "dumps"),
        MARKETLOG_ADMIN_KEY=uuid.uuid4().hex,
    )
    procs.start(*SERVICES)
    try:
        pids = {n: proc.pid for n, proc in procs.procs.items()}
        meter = CpuMeter.for_stack(pids, env.kafka, env.postgres)
        report, cpu = asyncio.run(drive(ports["daytrade"], plan, meter, name))
    finally:
        procs.stop_all()
    found = report.as_dict()
    answered = max(1, report.answered)
    found["cpu_us_per_command"] = {k: round(v * 1e6 / answered, 1) for k, v in cpu.spent.items()}
    found["vm_cores"] = cpu.vm
    found["xml_orders_per_s_same_run"] = xml_same_run(env.results.get("e2e_bench"))
    return found


def xml_same_run(e2e: dict | None) -> int | None:
    """The best XML rate e2e_bench sustained in this run, whatever the topology (its surfaces
    are named ``xml (engine)``, ``xml (split)``)."""
    rates = (e2e or {}).get("max_sustained_per_s", {})
    found = [r for surface, r in rates.items() if surface.split(" ")[0] == "xml"]
    return max(found) if found else None


def summary(f: dict) -> str:
    lat = {k: round(v / 1000, 2) for k, v in f["latency_us"].items()}
    cpu = ", ".join(
        f"{k} {v}" for k, v in sorted(f["cpu_us_per_command"].items(), key=lambda kv: -kv[1])
    )
    xml = f["xml_orders_per_s_same_run"]
    return "\n".join(
        [
            f"{f['file']}: {f['commands']} commands, {f['users']} users; answered "
            f"{f['answered']} ({f['ok']} ok, errors {f['errors']}), complete: {f['complete']}",
            "",
            f"**{f['commands_per_second']:,} commands/s** over {f['seconds']} s; latency ms "
            + ", ".join(f"{k} {v}" for k, v in lat.items()),
            "",
            f"CPU µs per command: {cpu}; VM busy/steal (peak) {f['vm_cores']['busy']}/"
            f"{f['vm_cores']['steal']} ({f['vm_cores']['steal_peak']}) cores",
            "",
            "XML orders/s sustained in the same run (e2e_bench): "
            + (str(xml) if xml is not None else "not run"),
        ]
    )
