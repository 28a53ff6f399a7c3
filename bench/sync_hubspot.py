"""Benchmark: ``crm-sync sync hubspot --full`` against a fake HubSpot, next to a plain pager.

The fake HubSpot (``tests/fakes/hubspot.py``) runs in a process of its own (spawned), so
its CPU never competes with the measured client for the GIL. In one run the benchmark
measures, against the same server and records:

* **baseline**: plain httpx paging through the companies, then the contacts (``limit=100``,
  the properties and ``associations=companies`` the connector asks for), in a process of
  its own, doing nothing else with the answers than parse them and follow ``after``;
* **sync**: the real CLI, ``crm-sync sync hubspot --full``, as a subprocess writing into a
  fresh SQLite store.

For both it prints the wall time, records per second, the requests the server answered
and the peak memory (RSS high-water) of the measured process, then the ratios. Times are
those of the whole process (what a user waits for; the CLI's includes its start-up and
the store's creation); the "run" time is the sync engine's own (``--json``'s
``duration_seconds``) and, for the baseline, the paging alone.

    python bench/sync_hubspot.py                          # 20,000 companies, 100,000 contacts
    python bench/sync_hubspot.py --latency 0.02           # 20 ms per request
    python bench/sync_hubspot.py --spread                 # contacts at random companies
    python bench/sync_hubspot.py --incremental-noop       # then an incremental run, no changes
    python bench/sync_hubspot.py --rate-limit 100/10 --companies 5000 --contacts 25000
    python bench/sync_hubspot.py --memory-check           # the sync at M and 10 x M contacts
    python bench/sync_hubspot.py --profile /tmp/sync.txt  # the sync under py-spy (raw stacks)

Without ``--rate-limit`` neither the server nor the connector limits the request rate
(``requests_per_window: null``, and the server states no budget in its headers, which
the connector would otherwise pace itself to): the baseline is not paced either. With it, the server
enforces the limit and the connector is configured with it; the baseline is skipped (a
plain pager would run into 429s) and the run is compared with the limit's bound,
``requests / limit x window``. Figures only: nothing here fails on a missed target.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs

import httpx

__all__ = ["BaselineFigures", "Report", "RunFigures", "Scenario", "main", "run_benchmark"]

ROOT = Path(__file__).resolve().parents[1]
CONNECTOR = "hubspot"
LIST_LIMIT = 100
COMPANIES_PATH = "/crm/v3/objects/companies"
CONTACTS_PATH = "/crm/v3/objects/contacts"
LIST_ENDPOINTS = (f"GET {COMPANIES_PATH}", f"GET {CONTACTS_PATH}")
SERVER_START_TIMEOUT = 900.0

TARGET_TIME_RATIO_AT_LATENCY = 1.15
TARGET_REQUEST_RATIO = 1.05
TARGET_RECORDS_PER_SECOND = 10_000.0
TARGET_NOOP_REQUESTS = 4
TARGET_RATE_LIMIT_SLACK = 1.10
TARGET_MEMORY_RATIO = 1.2
TARGET_SPREAD_RECORDS_PER_SECOND = 15_000.0
TARGET_REFRESHES_PER_CUSTOMER = 1.1


# -- the fake server, in a process of its own ----------------------------------------


@dataclass(frozen=True)
class Scenario:
    """What the fake serves and how: record counts, per-request latency, a rate limit."""

    companies: int
    contacts: int
    seed: int = 1
    latency: float = 0.0
    rate_limit: tuple[int, float] | None = None
    spread: bool = False
    """Contacts in creation order at random companies (as HubSpot lists a real portal),
    instead of each company's contacts one after the other."""

    def describe(self) -> str:
        limit = "no rate limit"
        if self.rate_limit is not None:
            limit = f"rate limit {self.rate_limit[0]}/{self.rate_limit[1]:g} s"
        layout = "spread across companies" if self.spread else "grouped by company"
        return (
            f"{self.companies:,} companies, {self.contacts:,} contacts ({layout}), "
            f"latency {self.latency * 1000:g} ms, {limit}"
        )


@dataclass
class ServerStats:
    """What the fake answered since its counters were last reset."""

    requests: int
    by_endpoint: dict[str, int]
    by_status: dict[int, int]
    list_queries: dict[str, list[str]]
    """Per list endpoint: the distinct (properties, associations, limit, archived) asked."""


def _list_query(query: str) -> str:
    params = parse_qs(query, keep_blank_values=True)
    shown = {k: params.get(k, [""])[-1] for k in ("properties", "associations", "limit")}
    shown["archived"] = params.get("archived", ["false"])[-1]
    return "&".join(f"{k}={v}" for k, v in shown.items())


def _serve(scenario: Scenario, conn: Connection) -> None:
    """The server process: generate the data, serve it, answer the parent's commands."""
    sys.path.insert(0, str(ROOT))
    from tests.fakes.hubspot import HubSpotData, run_fake_hubspot

    data = HubSpotData.generate(
        scenario.companies, scenario.contacts, seed=scenario.seed, spread=scenario.spread
    )
    with run_fake_hubspot(
        data,
        latency=scenario.latency,
        rate_limit=scenario.rate_limit,
        # without a limit the fake states none either: a stated budget (a Pro app's 190
        # per 10 s) would pace the sync, not the engine, and the baseline ignores it
        states_budget=scenario.rate_limit is not None,
    ) as fake:
        conn.send((fake.url, fake.token))
        while True:
            command = conn.recv()
            if command == "stats":
                queries: dict[str, set[str]] = {}
                for record in list(fake.requests.log):
                    if record.endpoint in LIST_ENDPOINTS:
                        queries.setdefault(record.endpoint, set()).add(_list_query(record.query))
                conn.send(
                    ServerStats(
                        fake.requests.count,
                        dict(fake.requests.by_endpoint),
                        dict(fake.requests.by_status),
                        {k: sorted(v) for k, v in queries.items()},
                    )
                )
            elif command == "reset":
                fake.requests.reset()
                fake.reset_rate_limits()
                conn.send(None)
            else:
                return


class FakeServer:
    """A fake HubSpot in a spawned process; ``url`` and ``token`` once it serves."""

    def __init__(self, scenario: Scenario) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(scenario, child), name="fake-hubspot", daemon=True
        )
        self._process.start()
        child.close()
        if not self._conn.poll(SERVER_START_TIMEOUT):
            self.close()
            raise RuntimeError("the fake HubSpot did not start")
        self.url, self.token = self._conn.recv()

    def stats(self) -> ServerStats:
        self._conn.send("stats")
        stats: ServerStats = self._conn.recv()
        return stats

    def reset(self) -> None:
        """Zero the request counters and the rate-limit windows."""
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


def connector_properties() -> dict[str, str]:
    """The comma-joined properties the hubspot connector's default mapping asks for."""
    from crmsync.sdk.records import ObjectType
    from crmsync_hubspot.config import HubSpotConfig
    from crmsync_hubspot.settings import MERGED_IDS_PROPERTY, STREAMS

    config = HubSpotConfig.model_validate({"type": "hubspot", "access_token": "unused"})
    contact_names = [*config.contacts.names()]
    if config.billing_contact.contact_property is not None:
        contact_names.append(config.billing_contact.contact_property)
    names = {
        COMPANIES_PATH: config.companies.names(),
        CONTACTS_PATH: contact_names,
    }
    streams = {COMPANIES_PATH: ObjectType.COMPANY, CONTACTS_PATH: ObjectType.CONTACT}
    return {
        path: ",".join(
            dict.fromkeys([*wanted, STREAMS[streams[path]].modified_property, MERGED_IDS_PROPERTY])
        )
        for path, wanted in names.items()
    }


def _page_through(url: str, token: str, properties: dict[str, str], conn: Connection) -> None:
    """The baseline process: page through companies then contacts; report what it took."""
    plan = [
        (COMPANIES_PATH, {"limit": str(LIST_LIMIT), "properties": properties[COMPANIES_PATH]}),
        (
            CONTACTS_PATH,
            {
                "limit": str(LIST_LIMIT),
                "properties": properties[CONTACTS_PATH],
                "associations": "companies",
            },
        ),
    ]
    records = requests = 0
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for path, params in plan:
            after: str | None = None
            while True:
                query = params if after is None else {**params, "after": after}
                response = client.get(path, params=query)
                requests += 1
                response.raise_for_status()
                answer = response.json()
                records += len(answer["results"])
                after = answer.get("paging", {}).get("next", {}).get("after")
                if after is None:
                    break
    seconds = time.perf_counter() - started
    conn.send((records, requests, seconds, _own_peak_rss()))


def _own_peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_baseline(server: FakeServer) -> BaselineFigures:
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_page_through,
        args=(server.url, server.token, connector_properties(), sender),
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
    by_status: dict[int, int] = field(default_factory=dict)
    refreshed: int = 0
    """Customers whose readiness the run recomputed (``readiness_refreshed``)."""


def _cli() -> str:
    beside = Path(sys.executable).with_name("crm-sync")
    found = str(beside) if beside.exists() else shutil.which("crm-sync")
    if found is None:
        raise RuntimeError("crm-sync is not installed (pip install -e .)")
    return found


class Project:
    """A fresh folder with a config pointing the ``hubspot`` connector at the fake."""

    def __init__(self, folder: Path, server: FakeServer, scenario: Scenario) -> None:
        self.folder = folder
        self.server = server
        limit, window = scenario.rate_limit or (None, 10.0)
        section = "\n".join(
            [
                "    type: hubspot",
                f"    base_url: {server.url}",
                "    access_token: ${HUBSPOT_TOKEN}",
                f"    requests_per_window: {'null' if limit is None else limit}",
                f"    window_seconds: {window:g}",
            ]
        )
        self.config = folder / "crm-sync.yaml"
        self.config.write_text(
            f"database_url: sqlite:///{folder / 'crm-sync.db'}\nlog_level: WARNING\n"
            f"connectors:\n  {CONNECTOR}:\n{section}\n"
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
        self.env["HUBSPOT_TOKEN"] = server.token

    def sync(self, *args: str, profile: Path | None = None) -> RunFigures:
        """``crm-sync sync hubspot --json ARGS``, measured; the server's counters reset first."""
        self.server.reset()
        command = [_cli(), "--config", str(self.config), "sync", CONNECTOR, "--json", *args]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            started = time.perf_counter()
            process = subprocess.Popen(
                command, cwd=self.folder, env=self.env, stdout=out, stderr=err
            )
            spy = None if profile is None else _attach_py_spy(process.pid, profile)
            _, wait_status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(wait_status)
            if spy is not None:
                spy.wait(timeout=60)
            out.seek(0)
            err.seek(0)
            output, errors = out.read(), err.read()
        stats = self.server.stats()
        run = _first_run(output)
        if run is None:
            sys.stderr.write(f"crm-sync exited {process.returncode}:\n{errors[-3000:]}\n")
            run = {"status": "no output", "counts": {"seen": 0}, "duration_seconds": 0.0}
        return RunFigures(
            command=" ".join(["crm-sync sync hubspot", *args]),
            exit_code=process.returncode,
            status=str(run["status"]),
            records=int(run["counts"]["seen"]),
            requests=stats.requests,
            wall_seconds=wall,
            run_seconds=float(run["duration_seconds"]),
            peak_rss_bytes=usage.ru_maxrss * 1024,
            by_status=stats.by_status,
            refreshed=int(run.get("readiness_refreshed", 0)),
        )


def _first_run(output: str) -> dict[str, Any] | None:
    try:
        runs = json.loads(output)["runs"]
    except (ValueError, KeyError, TypeError):
        return None
    return runs[0] if runs else None


def _attach_py_spy(pid: int, profile: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling process ``pid`` (every thread, idle ones left out) until it exits.

    Attached rather than launching the CLI itself, so that the CLI's own output and peak
    memory are measured as in any other run (its timing is perturbed a little).
    """
    spy = Path(sys.executable).with_name("py-spy")
    found = str(spy) if spy.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    formats = {".svg": "flamegraph", ".json": "speedscope"}
    fmt = formats.get(profile.suffix, "raw")
    command = [found, "record", "--pid", str(pid), "--rate", "250", "--format", fmt]
    return subprocess.Popen(
        [*command, "--output", str(profile)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


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
    rate_limit_bound_seconds: float | None = None
    memory: dict[int, RunFigures] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["memory"] = {str(k): asdict(v) for k, v in self.memory.items()}
        return data


def run_benchmark(
    scenario: Scenario, *, incremental_noop: bool = False, profile: Path | None = None
) -> Report:
    """Baseline (unless rate-limited), the full sync, and optionally the no-op incremental."""
    report = Report(scenario)
    with FakeServer(scenario) as server, tempfile.TemporaryDirectory() as folder:
        if scenario.rate_limit is None:
            server.reset()
            report.baseline = run_baseline(server)
            baseline_queries = server.stats().list_queries
        project = Project(Path(folder), server, scenario)
        report.sync = project.sync("--full", profile=profile)
        if scenario.rate_limit is None:
            synced_queries = server.stats().list_queries
            report.same_queries = all(
                set(asked) <= set(synced_queries.get(endpoint, ()))
                for endpoint, asked in baseline_queries.items()
            )
        if incremental_noop:
            report.noop = project.sync()
    _judge(report)
    return report


def run_memory_check(scenario: Scenario, factor: int) -> Report:
    """The full sync's peak memory at ``contacts`` and at ``factor`` times as many."""
    report = Report(scenario)
    for contacts in (scenario.contacts, scenario.contacts * factor):
        sized = Scenario(
            scenario.companies, contacts, scenario.seed, scenario.latency, spread=scenario.spread
        )
        with FakeServer(sized) as server, tempfile.TemporaryDirectory() as folder:
            report.memory[contacts] = Project(Path(folder), server, sized).sync("--full")
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
    if sync is not None and scenario.latency == 0 and scenario.rate_limit is None:
        rate = sync.records / sync.wall_seconds
        wanted = TARGET_SPREAD_RECORDS_PER_SECOND if scenario.spread else TARGET_RECORDS_PER_SECOND
        targets.append(Target("records/s end to end, no latency", rate, wanted, rate >= wanted))
    if sync is not None and scenario.companies:
        per_customer = sync.refreshed / scenario.companies
        targets.append(
            Target(
                "readiness evaluations per customer",
                per_customer,
                TARGET_REFRESHES_PER_CUSTOMER,
                per_customer <= TARGET_REFRESHES_PER_CUSTOMER,
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
    if sync is not None and scenario.rate_limit is not None:
        limit, window = scenario.rate_limit
        bound = sync.requests / limit * window
        report.rate_limit_bound_seconds = bound
        rejected = sync.by_status.get(429, 0)
        targets.append(Target("429 answers under the rate limit", rejected, 0, rejected == 0))
        ratio = sync.wall_seconds / bound
        targets.append(
            Target(
                "sync time / the limit's bound (requests / limit x window)",
                ratio,
                TARGET_RATE_LIMIT_SLACK,
                ratio <= TARGET_RATE_LIMIT_SLACK,
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
    print(f"HubSpot sync benchmark: {report.scenario.describe()}", file=out)
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
    sync, baseline = report.sync, report.baseline
    if sync is not None and baseline is not None:
        print(
            f"  ratio sync/baseline: time {sync.wall_seconds / baseline.wall_seconds:.2f}x "
            f"(run only {sync.run_seconds / baseline.run_seconds:.2f}x), "
            f"requests {sync.requests / baseline.requests:.3f}x; same properties and "
            f"associations asked: {'yes' if report.same_queries else 'NO'}",
            file=out,
        )
    if sync is not None and report.rate_limit_bound_seconds is not None:
        statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(sync.by_status.items()))
        print(
            f"  the limit's bound: {report.rate_limit_bound_seconds:.1f} s for "
            f"{sync.requests:,} requests; answers by status: {statuses}",
            file=out,
        )
    if report.targets:
        print("targets:", file=out)
        for target in report.targets:
            print(target.line(), file=out)


# -- the command line ----------------------------------------------------------------


def _rate_limit(text: str) -> tuple[int, float]:
    try:
        count, _, window = text.partition("/")
        parsed = (int(count), float(window or "10"))
    except ValueError:
        raise argparse.ArgumentTypeError("use REQUESTS/SECONDS, for example 100/10") from None
    if parsed[0] < 1 or parsed[1] <= 0:
        raise argparse.ArgumentTypeError("both numbers must be positive")
    return parsed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="crm-sync sync hubspot --full against a fake HubSpot, next to plain paging."
    )
    parser.add_argument("--companies", type=int, default=20_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--spread",
        action="store_true",
        help="contacts in creation order at random companies, as a real portal lists them",
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds the server adds to every request"
    )
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=None,
        metavar="N/SECONDS",
        help="the server allows N requests per SECONDS (rolling) and the connector is told so",
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
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record the full sync with py-spy into this file (.svg, .json, or raw stacks)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    scenario = Scenario(
        args.companies, args.contacts, args.seed, args.latency, args.rate_limit, args.spread
    )
    if args.memory_check:
        report = run_memory_check(scenario, args.memory_factor)
    else:
        report = run_benchmark(
            scenario, incremental_noop=args.incremental_noop, profile=args.profile
        )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_report(report, sys.stdout)
        if args.profile is not None and args.profile.suffix not in (".svg", ".json"):
            print_profile(args.profile, sys.stdout)
    runs = [r for r in (report.sync, report.noop, *report.memory.values()) if r is not None]
    return 0 if all(r.exit_code == 0 for r in runs) else 1


def print_profile(path: Path, out: IO[str], top: int = 25) -> None:
    """The functions py-spy saw most often in raw (collapsed) stacks: own and inclusive."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return
    print(f"profile: {total:,} samples of running threads ({path})", file=out)
    for title, counter in (("own time", own), ("inclusive", inclusive)):
        print(f"  top {top} by {title}:", file=out)
        for frame, samples in counter.most_common(top):
            print(f"    {samples / total:6.1%}  {frame}", file=out)


if __name__ == "__main__":
    sys.exit(main())
