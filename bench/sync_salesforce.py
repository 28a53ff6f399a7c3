"""Benchmark: ``crm-sync sync salesforce --full`` against a fake org, next to a plain pager.

The fake Salesforce (``tests/fakes/salesforce.py``) runs in a process of its own (spawned),
so its CPU never competes with the measured client for the GIL. Its data: Accounts, then
Contacts in creation order, each at a random Account (every fifth also related to a
second one), a thousand records per SystemModstamp. In one run the benchmark measures,
against the same server and records:

* **baseline**: plain httpx signing in (client credentials) and paging through the
  Accounts, then the Contacts, with exactly the SOQL the connector's full pass sends
  (``queryAll``, the same fields and AccountContactRelation/AccountContactRole
  subqueries, batch size 2,000), following ``nextRecordsUrl`` and doing nothing else
  with the answers than parse them, in a process of its own;
* **sync**: the real CLI, ``crm-sync sync salesforce --full``, as a subprocess writing
  into a fresh SQLite store.

For both it prints the wall time, records per second, the requests the server answered
(the token request included) and the peak memory (RSS high-water) of the measured
process, then the ratios, and the customers and contacts the sync stored.

    python bench/sync_salesforce.py                         # 20,000 accounts, 100,000 contacts
    python bench/sync_salesforce.py --latency 0.02          # 20 ms per request
    python bench/sync_salesforce.py --incremental-noop      # then an incremental run, no changes
    python bench/sync_salesforce.py --memory-check          # the sync at M and 10 x M contacts

Figures only: nothing here fails on a missed target.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

import httpx

__all__ = ["BaselineFigures", "Report", "RunFigures", "Scenario", "main", "run_benchmark"]

ROOT = Path(__file__).resolve().parents[1]
CONNECTOR = "salesforce"
API = "/services/data/v62.0"
BATCH = {"Sforce-Query-Options": "batchSize=2000"}
SERVER_START_TIMEOUT = 900.0

TARGET_TIME_RATIO_AT_LATENCY = 1.15
TARGET_REQUEST_RATIO = 1.05
TARGET_RECORDS_PER_SECOND = 10_000.0
TARGET_NOOP_REQUESTS = 6
"""An incremental run with nothing changed: a token request, the Account query and the
deleted log, the Contact query, the relations query and the deleted log."""
TARGET_MEMORY_RATIO = 1.2


# -- the fake server, in a process of its own ----------------------------------------


@dataclass(frozen=True)
class Scenario:
    """What the fake serves and how: record counts and per-request latency."""

    accounts: int
    contacts: int
    seed: int = 1
    latency: float = 0.0

    def describe(self) -> str:
        return (
            f"{self.accounts:,} accounts, {self.contacts:,} contacts, "
            f"latency {self.latency * 1000:g} ms"
        )


@dataclass
class ServerStats:
    """What the fake answered since its counters were last reset."""

    requests: int
    by_endpoint: dict[str, int]
    by_status: dict[int, int]
    queries: list[str]
    """The distinct SOQL of the query and queryAll requests."""


def _serve(scenario: Scenario, conn: Connection) -> None:
    """The server process: generate the org, serve it, answer the parent's commands."""
    sys.path.insert(0, str(ROOT))
    from tests.fakes.salesforce import SalesforceData, run_fake_salesforce

    data = SalesforceData.generate(scenario.accounts, scenario.contacts, seed=scenario.seed)
    with run_fake_salesforce(data, latency=scenario.latency) as fake:
        conn.send((fake.url, fake.oauth.client_id, fake.oauth.client_secret))
        while True:
            command = conn.recv()
            if command == "stats":
                served = fake.requests
                queries = sorted(set(served.queries()))
                conn.send(
                    ServerStats(
                        served.count, dict(served.by_endpoint), dict(served.by_status), queries
                    )
                )
            elif command == "reset":
                fake.requests.reset()
                conn.send(None)
            else:
                return


class FakeServer:
    """A fake org in a spawned process; ``url`` and the app's credentials once it serves."""

    def __init__(self, scenario: Scenario) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(scenario, child), name="fake-salesforce", daemon=True
        )
        self._process.start()
        child.close()
        if not self._conn.poll(SERVER_START_TIMEOUT):
            self.close()
            raise RuntimeError("the fake Salesforce did not start")
        self.url, self.client_id, self.client_secret = self._conn.recv()

    def stats(self) -> ServerStats:
        self._conn.send("stats")
        stats: ServerStats = self._conn.recv()
        return stats

    def reset(self) -> None:
        """Zero the request counters."""
        self._conn.send("reset")
        self._conn.recv()

    def close(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError):  # the process is on its way out
                self._conn.send("stop")
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        self._conn.close()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- the baseline: plain httpx paging, in a process of its own -----------------------


@dataclass
class BaselineFigures:
    records: int
    requests: int
    wall_seconds: float
    """The process, from its start to its end."""
    run_seconds: float
    """The paging alone: the token request to the last answer."""
    peak_rss_bytes: int


def connector_queries(url: str) -> list[str]:
    """The SOQL the salesforce connector's full passes start with (default config)."""
    from crmsync.sdk.connector import ConnectorContext
    from crmsync.sdk.records import ObjectType
    from crmsync_salesforce import SalesforceConfig, SalesforceConnector

    config = SalesforceConfig.model_validate(
        {
            "type": "salesforce",
            "login_url": url,
            "auth": {"flow": "client_credentials", "client_id": "x", "client_secret": "y"},
        }
    )
    until = datetime.now(UTC)
    with SalesforceConnector(config, ConnectorContext(name=CONNECTOR)) as connector:
        return [
            connector.pass_soql(stream, until=until)
            for stream in (ObjectType.COMPANY, ObjectType.CONTACT)
        ]


def _page_through(
    url: str, credentials: tuple[str, str], queries: list[str], conn: Connection
) -> None:
    """The baseline process: sign in, page through Accounts then Contacts; report it."""
    records = requests = 0
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        form = {"grant_type": "client_credentials", "client_id": credentials[0],
                "client_secret": credentials[1]}  # fmt: skip
        session = client.post("/services/oauth2/token", data=form).json()
        requests += 1
        client.headers["Authorization"] = f"Bearer {session['access_token']}"
        for soql in queries:
            answer = client.get(f"{API}/queryAll", params={"q": soql}, headers=BATCH)
            while True:
                requests += 1
                answer.raise_for_status()
                page = answer.json()
                records += len(page["records"])
                following = page.get("nextRecordsUrl")
                if not following:
                    break
                answer = client.get(following, headers=BATCH)
    seconds = time.perf_counter() - started
    conn.send((records, requests, seconds, _own_peak_rss()))


def _own_peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_baseline(server: FakeServer) -> BaselineFigures:
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    credentials = (server.client_id, server.client_secret)
    process = context.Process(
        target=_page_through,
        args=(server.url, credentials, connector_queries(server.url), sender),
        name="baseline",
    )
    started = time.perf_counter()
    process.start()
    sender.close()
    outcome = receiver.recv()
    process.join()
    wall = time.perf_counter() - started
    records, requests, seconds, rss = outcome
    return BaselineFigures(records, requests, wall, seconds, rss)


# -- the CLI -------------------------------------------------------------------------


@dataclass
class RunFigures:
    command: str
    exit_code: int
    status: str
    records: int
    requests: int
    wall_seconds: float
    """The CLI process, from its start to its exit."""
    run_seconds: float
    """The sync engine's own duration (``duration_seconds`` of the run)."""
    peak_rss_bytes: int
    stored: dict[str, int] = field(default_factory=dict)
    """Rows in the store after the run: customers, contacts, external refs."""
    by_status: dict[int, int] = field(default_factory=dict)


def _cli() -> str:
    beside = Path(sys.executable).with_name("crm-sync")
    found = str(beside) if beside.exists() else shutil.which("crm-sync")
    if found is None:
        raise RuntimeError("crm-sync is not installed (pip install -e .)")
    return found


class Project:
    """A fresh folder with a config pointing the ``salesforce`` connector at the fake."""

    def __init__(self, folder: Path, server: FakeServer) -> None:
        self.folder = folder
        self.server = server
        self.db = folder / "crm-sync.db"
        section = "\n".join(
            [
                "    type: salesforce",
                f"    login_url: {server.url}",
                "    auth:",
                "      flow: client_credentials",
                "      client_id: ${SALESFORCE_CLIENT_ID}",
                "      client_secret: ${SALESFORCE_CLIENT_SECRET}",
                "    lag_seconds: 0",
            ]
        )
        self.config = folder / "crm-sync.yaml"
        self.config.write_text(
            f"database_url: sqlite:///{self.db}\nlog_level: WARNING\n"
            f"connectors:\n  {CONNECTOR}:\n{section}\n"
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
        self.env["SALESFORCE_CLIENT_ID"] = server.client_id
        self.env["SALESFORCE_CLIENT_SECRET"] = server.client_secret

    def sync(self, *args: str) -> RunFigures:
        """``crm-sync sync salesforce --json ARGS``, measured; the server's counters reset first."""
        self.server.reset()
        command = [_cli(), "--config", str(self.config), "sync", CONNECTOR, "--json", *args]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            started = time.perf_counter()
            process = subprocess.Popen(
                command, cwd=self.folder, env=self.env, stdout=out, stderr=err
            )
            _, wait_status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(wait_status)
            out.seek(0)
            err.seek(0)
            output, errors = out.read(), err.read()
        stats = self.server.stats()
        run = _first_run(output)
        if run is None:
            sys.stderr.write(f"crm-sync exited {process.returncode}:\n{errors[-3000:]}\n")
            run = {"status": "no output", "counts": {"seen": 0}, "duration_seconds": 0.0}
        return RunFigures(
            command=" ".join(["crm-sync sync salesforce", *args]),
            exit_code=process.returncode,
            status=str(run["status"]),
            records=int(run["counts"]["seen"]),
            requests=stats.requests,
            wall_seconds=wall,
            run_seconds=float(run["duration_seconds"]),
            peak_rss_bytes=usage.ru_maxrss * 1024,
            stored=self.stored(),
            by_status=stats.by_status,
        )

    def stored(self) -> dict[str, int]:
        """What the store holds: customers, contacts and the CRM records they come from."""
        if not self.db.exists():
            return {}
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as conn:
            return {
                table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
                for table in ("customers", "contacts", "external_refs")
            }


def _first_run(output: str) -> dict[str, Any] | None:
    try:
        runs = json.loads(output)["runs"]
    except (ValueError, KeyError, TypeError):
        return None
    return runs[0] if runs else None


# -- a benchmark run -----------------------------------------------------------------


@dataclass
class Target:
    name: str
    value: float
    limit: float
    met: bool

    def line(self) -> str:
        verdict = "met" if self.met else "MISSED"
        return f"  {verdict:<6}  {self.name}: {_number(self.value)} (target {_number(self.limit)})"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.2f}"


@dataclass
class Report:
    scenario: Scenario
    baseline: BaselineFigures | None = None
    sync: RunFigures | None = None
    noop: RunFigures | None = None
    same_queries: bool | None = None
    memory: dict[int, RunFigures] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["memory"] = {str(k): asdict(v) for k, v in self.memory.items()}
        return data


def run_benchmark(scenario: Scenario, *, incremental_noop: bool = False) -> Report:
    """Baseline, the full sync, and optionally the no-op incremental run."""
    report = Report(scenario)
    with FakeServer(scenario) as server, tempfile.TemporaryDirectory() as folder:
        server.reset()
        report.baseline = run_baseline(server)
        baseline_queries = server.stats().queries
        project = Project(Path(folder), server)
        report.sync = project.sync("--full")
        synced_queries = server.stats().queries
        report.same_queries = _shape(baseline_queries) == _shape(synced_queries)
        if incremental_noop:
            report.noop = project.sync()
    _judge(report)
    return report


def _shape(queries: list[str]) -> set[str]:
    """The queries without their time bounds (the baseline's ``until`` is its own)."""
    return {soql.split(" WHERE ")[0] for soql in queries}


def run_memory_check(scenario: Scenario, factor: int) -> Report:
    """The full sync's peak memory at ``contacts`` and at ``factor`` times as many."""
    report = Report(scenario)
    for contacts in (scenario.contacts, scenario.contacts * factor):
        sized = Scenario(scenario.accounts, contacts, scenario.seed, scenario.latency)
        with FakeServer(sized) as server, tempfile.TemporaryDirectory() as folder:
            report.memory[contacts] = Project(Path(folder), server).sync("--full")
    _judge(report)
    return report


def _judge(report: Report) -> None:
    scenario, sync, baseline = report.scenario, report.sync, report.baseline
    targets = report.targets
    if sync is not None and baseline is not None:
        time_ratio = sync.wall_seconds / baseline.wall_seconds
        request_ratio = sync.requests / baseline.requests
        if scenario.latency > 0:
            targets.append(
                Target(
                    f"sync time / baseline time at {scenario.latency * 1000:g} ms latency",
                    time_ratio,
                    TARGET_TIME_RATIO_AT_LATENCY,
                    time_ratio <= TARGET_TIME_RATIO_AT_LATENCY,
                )
            )
        targets.append(
            Target(
                "sync requests / baseline requests",
                request_ratio,
                TARGET_REQUEST_RATIO,
                request_ratio <= TARGET_REQUEST_RATIO,
            )
        )
    if sync is not None and scenario.latency == 0:
        rate = sync.records / sync.wall_seconds
        targets.append(
            Target(
                "records/s end to end, no latency",
                rate,
                TARGET_RECORDS_PER_SECOND,
                rate >= TARGET_RECORDS_PER_SECOND,
            )
        )
    if report.noop is not None:
        requests = report.noop.requests
        targets.append(
            Target(
                "requests of an incremental run with nothing changed",
                requests,
                TARGET_NOOP_REQUESTS,
                requests <= TARGET_NOOP_REQUESTS,
            )
        )
    if len(report.memory) == 2:
        small, large = (report.memory[k].peak_rss_bytes for k in sorted(report.memory))
        ratio = large / small
        targets.append(
            Target(
                "peak memory ratio, 10x the contacts",
                ratio,
                TARGET_MEMORY_RATIO,
                ratio <= TARGET_MEMORY_RATIO,
            )
        )


# -- printing ------------------------------------------------------------------------


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def _row(name: str, figures: BaselineFigures | RunFigures) -> str:
    wall = figures.wall_seconds
    rate = figures.records / wall if wall > 0 else 0.0
    return (
        f"  {name:<52}{wall:>9.2f}{figures.run_seconds:>9.2f}{rate:>12,.0f}"
        f"{figures.records:>11,}{figures.requests:>10,}{_mib(figures.peak_rss_bytes):>11}"
    )


def print_report(report: Report, out: IO[str]) -> None:
    print(f"Salesforce sync benchmark: {report.scenario.describe()}", file=out)
    header = (
        f"  {'':<52}{'wall s':>9}{'run s':>9}{'records/s':>12}{'records':>11}"
        f"{'requests':>10}{'peak RSS':>11}"
    )
    rows: list[tuple[str, BaselineFigures | RunFigures]] = []
    if report.baseline is not None:
        rows.append(("baseline (httpx paging)", report.baseline))
    runs = [(r.command, r) for r in (report.sync, report.noop) if r is not None]
    runs += [(f"{r.command} ({n:,} contacts)", r) for n, r in sorted(report.memory.items())]
    rows += runs
    print("\n".join([header, *(_row(name, figures) for name, figures in rows)]), file=out)
    for name, run in runs:
        if run.exit_code != 0 or run.status != "succeeded":
            print(f"  !! {name}: exit {run.exit_code}, status {run.status}", file=out)
        stored = ", ".join(f"{table} {count:,}" for table, count in run.stored.items())
        print(f"  stored after {name}: {stored or 'nothing'}", file=out)
    sync, baseline = report.sync, report.baseline
    if sync is not None and baseline is not None:
        print(
            f"  ratio sync/baseline: time {sync.wall_seconds / baseline.wall_seconds:.2f}x "
            f"(run only {sync.run_seconds / baseline.run_seconds:.2f}x), "
            f"requests {sync.requests / baseline.requests:.3f}x; same SOQL sent: "
            f"{'yes' if report.same_queries else 'NO'}",
            file=out,
        )
    if report.targets:
        print("targets:", file=out)
        for target in report.targets:
            print(target.line(), file=out)


# -- the command line ----------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="crm-sync sync salesforce --full against a fake org, next to plain paging."
    )
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds the server adds to every request"
    )
    parser.add_argument(
        "--incremental-noop",
        action="store_true",
        help="after the full sync, an incremental run with nothing changed",
    )
    parser.add_argument(
        "--memory-check",
        action="store_true",
        help="only the sync's peak memory at --contacts and --memory-factor times as many",
    )
    parser.add_argument("--memory-factor", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    scenario = Scenario(args.accounts, args.contacts, args.seed, args.latency)
    if args.memory_check:
        report = run_memory_check(scenario, args.memory_factor)
    else:
        report = run_benchmark(scenario, incremental_noop=args.incremental_noop)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_report(report, sys.stdout)
    runs = [r for r in (report.sync, report.noop, *report.memory.values()) if r is not None]
    return 0 if all(r.exit_code == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
