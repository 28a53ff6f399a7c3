"""Benchmark: ``crm-sync sync pipedrive --full`` against a fake Pipedrive, next to a plain pager.

The fake Pipedrive (``tests/fakes/pipedrive.py``) runs in a process of its own (spawned),
so its CPU never competes with the measured client for the GIL. Its persons are in
creation order, spread over random organizations. In one run the benchmark measures,
against the same server and records:

* **baseline**: plain httpx paging through the organizations, then the persons
  (``limit=500``, ``sort_by=id``, the query the connector sends), in a process of its own,
  doing nothing else with the answers than parse them and follow ``next_cursor``;
* **sync**: the real CLI, ``crm-sync sync pipedrive --full``, as a subprocess writing into
  a fresh SQLite store, which is then counted (customers, CRM contacts): the records
  landed, not only the requests.

For both it prints the wall time, records per second, the requests the server answered
and the peak memory (RSS high-water) of the measured process, then the ratios. Times are
those of the whole process (what a user waits for; the CLI's includes its start-up and
the store's creation); the "run" time is the sync engine's own (``--json``'s
``duration_seconds``) and, for the baseline, the paging alone.

    python bench/sync_pipedrive.py                          # 20,000 organizations, 100,000 persons
    python bench/sync_pipedrive.py --latency 0.02           # 20 ms per request
    python bench/sync_pipedrive.py --incremental-noop       # then an incremental run, no changes
    python bench/sync_pipedrive.py --memory-check           # the sync at M and 10 x M persons

Neither the server nor the connector limits the request rate (``requests_per_window:
null``). Figures only: nothing here fails on a missed target.
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
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

import httpx

__all__ = ["BaselineFigures", "Report", "RunFigures", "Scenario", "main", "run_benchmark"]

ROOT = Path(__file__).resolve().parents[1]
CONNECTOR = "pipedrive"
LIST_LIMIT = 500
ORGANIZATIONS_PATH = "/api/v2/organizations"
PERSONS_PATH = "/api/v2/persons"
SERVER_START_TIMEOUT = 300.0

TARGET_TIME_RATIO_AT_LATENCY = 1.15
TARGET_REQUEST_RATIO = 1.05
TARGET_RECORDS_PER_SECOND = 10_000.0
TARGET_NOOP_REQUESTS = 4
TARGET_MEMORY_RATIO = 1.2


@dataclass(frozen=True)
class Scenario:
    """What the fake serves and how: record counts and per-request latency."""

    organizations: int
    persons: int
    seed: int = 1
    latency: float = 0.0

    def describe(self) -> str:
        return (
            f"{self.organizations:,} organizations, {self.persons:,} persons, "
            f"latency {self.latency * 1000:g} ms"
        )


# -- the fake server, in a process of its own ----------------------------------------


def _serve(scenario: Scenario, conn: Connection) -> None:
    """The server process: describe the data, serve it, answer the parent's commands."""
    sys.path.insert(0, str(ROOT))
    from tests.fakes.pipedrive import PipedriveData, run_fake_pipedrive

    data = PipedriveData.generate(
        organizations=scenario.organizations, persons=scenario.persons, seed=scenario.seed
    )
    with run_fake_pipedrive(data, latency=scenario.latency) as fake:
        conn.send((fake.url, fake.token))
        while True:
            command = conn.recv()
            if command == "stats":
                conn.send((fake.requests.count, dict(fake.requests.by_status)))
            elif command == "reset":
                fake.requests.reset()
                conn.send(None)
            else:
                return


class FakeServer:
    """A fake Pipedrive in a spawned process; ``url`` and ``token`` once it serves."""

    def __init__(self, scenario: Scenario) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(scenario, child), name="fake-pipedrive", daemon=True
        )
        self._process.start()
        child.close()
        if not self._conn.poll(SERVER_START_TIMEOUT):
            self.close()
            raise RuntimeError("the fake Pipedrive did not start")
        self.url, self.token = self._conn.recv()

    def stats(self) -> tuple[int, dict[int, int]]:
        """Requests answered since the last reset, and their statuses."""
        self._conn.send("stats")
        stats: tuple[int, dict[int, int]] = self._conn.recv()
        return stats

    def reset(self) -> None:
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
    """The paging alone: first request to last answer."""
    peak_rss_bytes: int


def _page_through(url: str, token: str, conn: Connection) -> None:
    """The baseline process: page through organizations then persons; report what it took."""
    records = requests = 0
    params = {"limit": str(LIST_LIMIT), "sort_direction": "asc", "sort_by": "id"}
    started = time.perf_counter()
    with httpx.Client(base_url=url, headers={"x-api-token": token}, timeout=60) as client:
        for path in (ORGANIZATIONS_PATH, PERSONS_PATH):
            cursor: str | None = None
            while True:
                query = params if cursor is None else {**params, "cursor": cursor}
                response = client.get(path, params=query)
                requests += 1
                response.raise_for_status()
                answer = response.json()
                records += len(answer["data"])
                cursor = answer["additional_data"]["next_cursor"]
                if cursor is None:
                    break
    seconds = time.perf_counter() - started
    conn.send((records, requests, seconds, _own_peak_rss()))


def _own_peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_baseline(server: FakeServer) -> BaselineFigures:
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_page_through, args=(server.url, server.token, sender), name="baseline"
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
    """Rows in the store after the run: customers, CRM contacts."""
    by_status: dict[int, int] = field(default_factory=dict)


def _cli() -> str:
    beside = Path(sys.executable).with_name("crm-sync")
    found = str(beside) if beside.exists() else shutil.which("crm-sync")
    if found is None:
        raise RuntimeError("crm-sync is not installed (pip install -e .)")
    return found


class Project:
    """A fresh folder with a config pointing the ``pipedrive`` connector at the fake."""

    def __init__(self, folder: Path, server: FakeServer) -> None:
        self.folder = folder
        self.server = server
        self.db = folder / "crm-sync.db"
        section = "\n".join(
            [
                "    type: pipedrive",
                f"    base_url: {server.url}",
                "    api_token: ${PIPEDRIVE_API_TOKEN}",
                "    requests_per_window: null",
                "    organizations:",
                "      tax_status_field: Tax status",
                "      alias_fields: [Account ID]",
            ]
        )
        self.config = folder / "crm-sync.yaml"
        self.config.write_text(
            f"database_url: sqlite:///{self.db}\nlog_level: WARNING\n"
            f"connectors:\n  {CONNECTOR}:\n{section}\n"
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
        self.env["PIPEDRIVE_API_TOKEN"] = server.token

    def sync(self, *args: str) -> RunFigures:
        """``crm-sync sync pipedrive --json ARGS``, measured; the server's counters reset first."""
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
        requests, by_status = self.server.stats()
        run = _first_run(output)
        if run is None:
            sys.stderr.write(f"crm-sync exited {process.returncode}:\n{errors[-3000:]}\n")
            run = {"status": "no output", "counts": {"seen": 0}, "duration_seconds": 0.0}
        return RunFigures(
            command=" ".join(["crm-sync sync pipedrive", *args]),
            exit_code=process.returncode,
            status=str(run["status"]),
            records=int(run["counts"]["seen"]),
            requests=requests,
            wall_seconds=wall,
            run_seconds=float(run["duration_seconds"]),
            peak_rss_bytes=usage.ru_maxrss * 1024,
            stored=self.stored(),
            by_status=by_status,
        )

    def stored(self) -> dict[str, int]:
        """What landed in the store: customers and contacts read from the CRM."""
        if not self.db.exists():
            return {}
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            customers = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
            contacts = conn.execute(
                "SELECT count(*) FROM contacts WHERE external_id IS NOT NULL"
            ).fetchone()[0]
        return {"customers": int(customers), "contacts": int(contacts)}


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
    memory: dict[int, RunFigures] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["memory"] = {str(k): asdict(v) for k, v in self.memory.items()}
        return data


def run_benchmark(scenario: Scenario, *, incremental_noop: bool = False) -> Report:
    """The baseline, the full sync, and optionally the no-op incremental run."""
    report = Report(scenario)
    with FakeServer(scenario) as server, tempfile.TemporaryDirectory() as folder:
        server.reset()
        report.baseline = run_baseline(server)
        project = Project(Path(folder), server)
        report.sync = project.sync("--full")
        if incremental_noop:
            report.noop = project.sync()
    _judge(report)
    return report


def run_memory_check(scenario: Scenario, factor: int) -> Report:
    """The full sync's peak memory at ``persons`` and at ``factor`` times as many."""
    report = Report(scenario)
    for persons in (scenario.persons, scenario.persons * factor):
        sized = Scenario(scenario.organizations, persons, scenario.seed, scenario.latency)
        with FakeServer(sized) as server, tempfile.TemporaryDirectory() as folder:
            report.memory[persons] = Project(Path(folder), server).sync("--full")
    _judge(report)
    return report


def _judge(report: Report) -> None:
    scenario, sync, baseline = report.scenario, report.sync, report.baseline
    targets = report.targets
    if sync is not None and baseline is not None:
        time_ratio = sync.wall_seconds / baseline.wall_seconds
        request_ratio = sync.requests / baseline.requests
        if scenario.latency > 0:
            name = f"sync time / baseline time at {scenario.latency * 1000:g} ms latency"
            ok = time_ratio <= TARGET_TIME_RATIO_AT_LATENCY
            targets.append(Target(name, time_ratio, TARGET_TIME_RATIO_AT_LATENCY, ok))
        ok = request_ratio <= TARGET_REQUEST_RATIO
        targets.append(
            Target("sync requests / baseline requests", request_ratio, TARGET_REQUEST_RATIO, ok)
        )
    if sync is not None and scenario.latency == 0:
        rate = sync.records / sync.wall_seconds
        ok = rate >= TARGET_RECORDS_PER_SECOND
        targets.append(
            Target("records/s end to end, no latency", rate, TARGET_RECORDS_PER_SECOND, ok)
        )
    if report.noop is not None:
        requests = report.noop.requests
        ok = requests <= TARGET_NOOP_REQUESTS
        targets.append(
            Target(
                "requests of an incremental run with nothing changed",
                requests,
                TARGET_NOOP_REQUESTS,
                ok,
            )
        )
    if len(report.memory) == 2:
        small, large = (report.memory[k].peak_rss_bytes for k in sorted(report.memory))
        ratio = large / small
        ok = ratio <= TARGET_MEMORY_RATIO
        targets.append(Target("peak memory ratio, 10x the persons", ratio, TARGET_MEMORY_RATIO, ok))


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
    print(f"Pipedrive sync benchmark: {report.scenario.describe()}", file=out)
    header = (
        f"  {'':<52}{'wall s':>9}{'run s':>9}{'records/s':>12}{'records':>11}"
        f"{'requests':>10}{'peak RSS':>11}"
    )
    rows: list[tuple[str, BaselineFigures | RunFigures]] = []
    if report.baseline is not None:
        rows.append(("baseline (httpx paging)", report.baseline))
    runs = [(r.command, r) for r in (report.sync, report.noop) if r is not None]
    runs += [(f"{r.command} ({n:,} persons)", r) for n, r in sorted(report.memory.items())]
    rows += runs
    print("\n".join([header, *(_row(name, figures) for name, figures in rows)]), file=out)
    for name, run in runs:
        stored = ", ".join(f"{k} {v:,}" for k, v in run.stored.items())
        print(f"  stored after {name}: {stored or 'nothing'}", file=out)
        if run.exit_code != 0 or run.status != "succeeded":
            print(f"  !! {name}: exit {run.exit_code}, status {run.status}", file=out)
    sync, baseline = report.sync, report.baseline
    if sync is not None and baseline is not None:
        print(
            f"  ratio sync/baseline: time {sync.wall_seconds / baseline.wall_seconds:.2f}x "
            f"(run only {sync.run_seconds / baseline.run_seconds:.2f}x), "
            f"requests {sync.requests / baseline.requests:.3f}x",
            file=out,
        )
    if report.targets:
        print("targets:", file=out)
        for target in report.targets:
            print(target.line(), file=out)


# -- the command line ----------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="crm-sync sync pipedrive --full against a fake Pipedrive, next to paging."
    )
    parser.add_argument("--organizations", type=int, default=20_000)
    parser.add_argument("--persons", type=int, default=100_000)
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
        help="only the sync's peak memory at --persons and --memory-factor times as many",
    )
    parser.add_argument("--memory-factor", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    scenario = Scenario(args.organizations, args.persons, args.seed, args.latency)
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
