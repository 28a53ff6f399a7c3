"""The real ``crm-sync`` command against a fake HubSpot the test starts on 127.0.0.1.

Each test runs the fake in-process (``tests/fakes/hubspot.py``, served by uvicorn in a
background thread) and the CLI as a subprocess that talks to it over HTTP, exactly as
a user's ``crm-sync --config crm-sync.yaml sync hubspot`` would talk to HubSpot. The
fake's request counters show what a run cost; the store is read back through the CLI
(``customers list --json``, ``runs --json``) or, to compare two stores, directly.

The connector is configured without its own request budget (the fake sets none unless
a test asks) and with no search lag (the fake's search index does not lag unless a
test asks), so runs take as long as the work, not as long as HubSpot's limits.
"""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from crmsync.adapters.store import create_store
from tests.e2e.conftest import CLI, Result, run_cli
from tests.fakes.hubspot import FakeHubSpot, HubSpotData, OAuthConfig, run_fake_hubspot
from tests.support.progress import records_committed
from tests.support.snapshot import row_counts, snapshot

pytestmark = pytest.mark.slow

CONNECTOR = "hubspot"
COMPANIES_LIST = "GET /crm/v3/objects/companies"
CONTACTS_LIST = "GET /crm/v3/objects/contacts"
CONTACTS_SEARCH = "POST /crm/v3/objects/contacts/search"


# -- a project: a config file, a store and the CLI, against one running fake -----------


@dataclass
class Project:
    """A working directory whose ``crm-sync.yaml`` points the ``hubspot`` connector at a fake."""

    folder: Path
    fake: FakeHubSpot
    env: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)
    database: str = "store"

    @property
    def config(self) -> Path:
        return self.folder / f"{self.database}.yaml"

    @property
    def db(self) -> Path:
        return self.folder / f"{self.database}.db"

    def write_config(self) -> None:
        section: dict[str, Any] = {
            "type": "hubspot",
            "base_url": self.fake.url,
            "access_token": "${HUBSPOT_TOKEN}",
            "requests_per_window": None,
            "search_lag_seconds": 0,
            "timeout_seconds": 10,
            **self.settings,
        }
        document = {
            "database_url": f"sqlite:///{self.db}",
            "log_level": "WARNING",
            "connectors": {CONNECTOR: section},
        }
        self.config.write_text(yaml.safe_dump(document, sort_keys=False))

    def using(self, database: str) -> Project:
        """The same fake and settings, with a store of another name."""
        other = Project(self.folder, self.fake, self.env, dict(self.settings), database)
        other.write_config()
        return other

    def cli(self, *args: str) -> Result:
        return run_cli("--config", str(self.config), *args, cwd=self.folder, env=self.env)

    def sync(self, *args: str) -> Result:
        return self.cli("sync", CONNECTOR, "--json", *args)

    def popen_sync(self, *args: str) -> subprocess.Popen[str]:
        """``crm-sync sync hubspot`` started in the background (stdout and stderr piped)."""
        return subprocess.Popen(
            [str(CLI), "--config", str(self.config), "sync", CONNECTOR, "--json", *args],
            cwd=self.folder,
            env=run_cli_environment(self.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def customers(self) -> dict[str, dict[str, Any]]:
        """Customers by the HubSpot company ids they come from (every id of a folded one)."""
        listed = self.cli("customers", "list", "--json")
        assert listed.code == 0, listed.stderr
        found: dict[str, dict[str, Any]] = {}
        for customer in listed.json():
            for ref in customer["external_refs"]:
                found[ref["external_id"]] = customer
        return found

    def runs(self) -> list[dict[str, Any]]:
        listed = self.cli("runs", "--json")
        assert listed.code == 0, listed.stderr
        runs: list[dict[str, Any]] = listed.json()
        return runs

    def snapshot(self) -> dict[str, Any]:
        store = create_store(f"sqlite:///{self.db}")
        try:
            return snapshot(store)
        finally:
            store.dispose()

    def row_counts(self) -> dict[str, int]:
        store = create_store(f"sqlite:///{self.db}")
        try:
            return row_counts(store)
        finally:
            store.dispose()


def run_cli_environment(extra: dict[str, str]) -> dict[str, str]:
    """The environment ``run_cli`` gives the CLI (no CRMSYNC_ variables), plus ``extra``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    environ.update(extra)
    return environ


Start = Callable[..., Project]


@pytest.fixture
def hubspot(tmp_path: Path) -> Iterator[Start]:
    """``hubspot(data, settings={...}, **fake_options)``: start a fake and a project on it."""
    fakes: list[FakeHubSpot] = []

    def start(
        data: HubSpotData, *, settings: dict[str, Any] | None = None, **options: Any
    ) -> Project:
        fake = run_fake_hubspot(data, **options)
        fakes.append(fake)
        env = {"HUBSPOT_TOKEN": fake.token or "unused"}
        project = Project(tmp_path, fake, env, dict(settings or {}))
        project.write_config()
        return project

    yield start
    for fake in fakes:
        fake.stop()


def ok(result: Result) -> dict[str, Any]:
    """The ``--json`` output of a sync that exited 0 (its stderr shown when it did not)."""
    assert result.code == 0, result.stdout + result.stderr
    data: dict[str, Any] = result.json()
    return data


def counts(result: Result) -> dict[str, int]:
    run = ok(result)["runs"][0]
    assert run["status"] == "succeeded", run
    totals: dict[str, int] = run["counts"]
    return totals


class Watcher:
    """Does ``action`` once, in a thread, as soon as ``condition`` holds (polled every 2 ms)."""

    def __init__(self, condition: Callable[[], bool], action: Callable[[], None]) -> None:
        self.fired = threading.Event()
        self._stop = threading.Event()

        def watch() -> None:
            while not self._stop.is_set():
                if condition():
                    action()
                    self.fired.set()
                    return
                time.sleep(0.002)

        self._thread = threading.Thread(target=watch, name="watcher", daemon=True)
        self._thread.start()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def names(data: HubSpotData, contact_id: str) -> str:
    props = data.properties("contacts", contact_id)
    return f"{props['firstname']} {props['lastname']}"


# -- full and incremental runs ---------------------------------------------------------


def test_a_full_sync_creates_every_customer_with_the_labelled_billing_contact_and_a_second_changes_nothing(  # noqa: E501
    hubspot: Start,
) -> None:
    data = HubSpotData.generate(companies=300, contacts=1_500, seed=21, billing_share=0.7)
    project = hubspot(data)

    first = counts(project.sync("--full"))
    customers = project.customers()
    before = project.snapshot()
    second = counts(project.sync("--full"))

    assert first["created"] == first["seen"] == 1_800
    assert set(customers) == set(data.ids("companies"))
    labelled = 0
    for company_id, customer in customers.items():
        labelled_contacts = data.billing_contacts(company_id)
        primary = customer["primary_billing_contact"]
        assert len(customer["contacts"]) == 5
        if not labelled_contacts:
            assert primary is None
            assert [r["code"] for r in customer["blocked_reasons"]] == [
                "no_primary_billing_contact"
            ]
        else:
            labelled += 1
            [billing] = labelled_contacts
            assert primary["external_id"] == billing
            assert primary["name"] == names(data, billing)
            assert customer["ready"] is True
    assert 150 < labelled < 270
    assert (second["seen"], second["created"], second["updated"]) == (1_800, 0, 0)
    assert project.snapshot() == before


def test_an_incremental_run_picks_up_exactly_the_records_changed_since_the_last_run(
    hubspot: Start,
) -> None:
    data = HubSpotData.generate(companies=50, contacts=400, seed=22)
    project = hubspot(data)
    ok(project.sync("--full"))
    companies, contacts = data.ids("companies"), data.ids("contacts")
    renamed = {companies[3]: "Renamed One GmbH", companies[40]: "Renamed Two Ltd"}
    for company_id, name in renamed.items():
        data.update("companies", company_id, {"name": name})
    moved = {contacts[9]: "Newname", contacts[250]: "Othername", contacts[399]: "Lastname"}
    for contact_id, last in moved.items():
        data.update("contacts", contact_id, {"lastname": last})
    project.fake.requests.reset()

    changed = counts(project.sync())

    assert (changed["seen"], changed["updated"], changed["created"]) == (5, 5, 0)
    assert project.fake.requests.by_endpoint[CONTACTS_SEARCH] == 1
    customers = project.customers()
    for company_id, name in renamed.items():
        assert customers[company_id]["company_name"] == name
    shown = {c["external_id"]: c["name"] for cus in customers.values() for c in cus["contacts"]}
    for contact_id in moved:
        assert shown[contact_id] == names(data, contact_id)


def test_an_incremental_run_with_nothing_changed_makes_at_most_four_requests(
    hubspot: Start,
) -> None:
    data = HubSpotData.generate(companies=250, contacts=1_000, seed=23)
    project = hubspot(data)
    ok(project.sync("--full"))
    project.fake.requests.reset()

    nothing = counts(project.sync())

    assert nothing["seen"] == 0
    assert project.fake.requests.count <= 4, dict(project.fake.requests.by_endpoint)


def test_more_than_10000_contacts_sharing_one_modified_date_all_arrive_in_an_incremental_run(
    hubspot: Start,
) -> None:
    data = HubSpotData.generate(companies=100, contacts=10_500, seed=24)
    project = hubspot(data)
    ok(project.sync("--full"))
    bulk = datetime.now(UTC)  # a month-end bulk update: one lastmodifieddate for all
    for contact_id in data.ids("contacts"):
        data.update("contacts", contact_id, {"lastname": "Bulk"}, at=bulk)
    project.fake.requests.reset()

    changed = counts(project.sync())

    assert (changed["seen"], changed["updated"]) == (10_500, 10_500)
    searches = project.fake.requests.by_endpoint[CONTACTS_SEARCH]
    assert 53 <= searches <= 54  # 200 per answer, restarted past the last id each time
    assert set(project.fake.requests.by_status) == {200}
    stored = [c for cus in project.customers().values() for c in cus["contacts"]]
    assert len(stored) == 10_500
    assert all(c["name"].endswith(" Bulk") for c in stored)


def test_a_record_modified_while_a_run_reads_is_not_lost(hubspot: Start) -> None:
    data = HubSpotData.generate(companies=40, contacts=2_000, seed=25)
    project = hubspot(data)
    ok(project.sync("--full"))
    changed = data.ids("contacts")[:1_000]
    for contact_id in changed:
        data.update("contacts", contact_id, {"lastname": "First"})
    early, late = changed[0], changed[-1]  # read by the run's first answer / its last
    project.fake.latency = 0.05

    def modify() -> None:
        data.update("contacts", early, {"lastname": "Second"})
        data.update("contacts", late, {"lastname": "Second"})

    searches = project.fake.requests.by_endpoint
    with Watcher(lambda: searches[CONTACTS_SEARCH] >= 2, modify) as watcher:
        during = counts(project.sync())
    assert watcher.fired.is_set(), "the run ended before the records could be modified"
    project.fake.latency = 0.0
    after = counts(project.sync())

    assert during["seen"] == 999  # the early one with its first change, the late one not yet
    assert after["seen"] == 2
    shown = {
        c["external_id"]: c["name"] for cus in project.customers().values() for c in cus["contacts"]
    }
    assert {shown[early], shown[late]} == {names(data, early), names(data, late)}
    assert names(data, early).endswith(" Second")
    assert all(shown[c] == names(data, c) for c in changed)


@pytest.mark.parametrize("kill_after", [150, 2_500], ids=["in-companies", "in-contacts"])
def test_a_run_killed_mid_way_and_resumed_ends_identical_to_a_clean_run(
    hubspot: Start, kill_after: int
) -> None:
    data = HubSpotData.generate(companies=300, contacts=4_000, seed=26)
    data.archive("contacts", data.ids("contacts")[77])
    killed = hubspot(data, latency=0.01, settings={"page_size": 100})

    victim = killed.popen_sync("--full")
    deadline = time.monotonic() + 60
    while records_committed(killed.db) < kill_after and victim.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.003)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL, "the sync finished before it could be killed"
    killed.fake.latency = 0.0

    resumed = counts(killed.sync())
    clean = killed.using("clean")
    counts(clean.sync("--full"))

    assert resumed["seen"] < 4_300
    assert killed.runs()[-1]["status"] == "abandoned"
    assert killed.snapshot() == clean.snapshot()
    assert killed.row_counts()["customers"] == 300


# -- rate limits -----------------------------------------------------------------------


def test_a_429_storm_is_waited_out_and_every_record_arrives(hubspot: Start) -> None:
    data = HubSpotData.generate(companies=400, contacts=1_200, seed=27)
    # A 0.5 s rolling window (in the 429s' headers), so each wait is short.
    project = hubspot(data, rate_limit=(10_000, 0.5))
    project.fake.fail_next(4, status=429, path_prefix="/crm/v3/objects/companies")
    project.fake.fail_next(4, status=429, path_prefix="/crm/v3/objects/contacts")

    result = ok(project.sync("--full"))

    assert result["runs"][0]["status"] == "succeeded"
    assert result["runs"][0]["counts"]["created"] == 1_600
    assert project.fake.requests.by_status[429] == 8
    # each window waited out: four after each other in each stream (the streams may
    # be read side by side, their waits overlapping)
    assert result["runs"][0]["duration_seconds"] >= 4 * 0.5
    assert project.row_counts()["contacts"] == 1_200


def test_a_daily_limit_ends_the_run_with_exit_75_and_its_cursor_saved_and_the_next_run_completes(
    hubspot: Start,
) -> None:
    data = HubSpotData.generate(companies=1_000, contacts=3_000, seed=28)
    project = hubspot(data, daily_limit=20, settings={"page_size": 100})

    stopped = project.sync("--full")

    assert stopped.code == 75, stopped.stdout + stopped.stderr
    run = stopped.json()["runs"][0]
    assert run["status"] == "rate_limited"
    assert "daily" in run["error"].lower()
    assert project.runs()[0]["status"] == "rate_limited"
    saved = _cursor(project.db, "contact")
    assert saved is not None
    assert saved.startswith("list:")
    assert 0 < run["counts"]["seen"] < 4_000
    project.fake.daily_limit = None
    project.fake.reset_rate_limits()
    project.fake.requests.reset()

    resumed = counts(project.sync())

    assert resumed["seen"] < 4_000 - run["counts"]["seen"] + 300
    assert project.fake.requests.by_endpoint[CONTACTS_LIST] < 31  # did not start over
    assert project.row_counts()["customers"] == 1_000
    assert project.row_counts()["contacts"] == 3_000
    assert _cursor(project.db, "contact") is None


def _cursor(db: Path, stream: str) -> str | None:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT json_extract(cursor, '$.position') FROM sync_state WHERE stream = ?",
            (stream,),
        ).fetchone()
    return None if row is None else row[0]


# -- OAuth and secrets -----------------------------------------------------------------


def test_an_expired_oauth_token_is_refreshed_and_the_run_goes_on(hubspot: Start) -> None:
    data = HubSpotData.generate(companies=500, contacts=1_500, seed=29)
    oauth = OAuthConfig(
        client_id="e2e-client",
        client_secret=f"secret-{secrets.token_hex(12)}",
        refresh_token=f"refresh-{secrets.token_hex(12)}",
    )
    settings = {
        "access_token": None,
        "oauth": {
            "client_id": "e2e-client",
            "client_secret": "${HUBSPOT_CLIENT_SECRET}",
            "refresh_token": "${HUBSPOT_REFRESH_TOKEN}",
        },
    }
    project = hubspot(data, token=None, oauth=oauth, latency=0.02, settings=settings)
    project.env.update(
        HUBSPOT_CLIENT_SECRET=oauth.client_secret, HUBSPOT_REFRESH_TOKEN=oauth.refresh_token
    )
    served = project.fake.requests

    with Watcher(lambda: served.count >= 6, project.fake.expire_access_tokens) as watcher:
        result = project.cli("--log-level", "DEBUG", "sync", CONNECTOR, "--full", "--json")
    assert watcher.fired.is_set(), "the run ended before the token could expire"

    assert counts(result)["created"] == 2_000
    assert served.by_status[401] >= 1
    assert len(project.fake.access_tokens) == 2
    assert served.by_endpoint["POST /oauth/v1/token"] == 2
    output = result.stdout + result.stderr
    for secret in (oauth.client_secret, oauth.refresh_token, *project.fake.access_tokens):
        assert secret not in output


def test_the_access_token_never_appears_in_output_even_at_debug_level(hubspot: Start) -> None:
    data = HubSpotData.generate(companies=120, contacts=300, seed=30)
    token = f"pat-na1-{secrets.token_hex(16)}"
    project = hubspot(data, token=token, rate_limit=(10_000, 0.2))
    project.env["HUBSPOT_TOKEN"] = token
    project.fake.fail_next(1, status=429)
    project.fake.fail_next(1, status=503)
    project.fake.fail_next(1, status=400, path_prefix="/crm/v3/objects/contacts")
    debug = ("--log-level", "DEBUG")

    outputs = [
        project.cli(*debug, "sync", CONNECTOR, "--full"),  # retried, then a 400 ends it
        project.cli(*debug, "sync", CONNECTOR, "--full", "--json"),
        project.cli(*debug, "runs", "--json"),
        project.cli(*debug, "customers", "list", "--json"),
    ]
    project.fake.token = "pat-na1-rotated"  # ours is refused now: 401
    outputs.append(project.cli(*debug, "sync", CONNECTOR, "--json"))

    assert [r.code for r in outputs] == [1, 0, 0, 0, 1]
    assert "401" in outputs[-1].stdout
    assert "DEBUG" in outputs[1].stderr
    for result in outputs:
        assert token not in result.stdout
        assert token not in result.stderr
        assert token[8:] not in result.stdout + result.stderr


# -- merges and deletions --------------------------------------------------------------


def test_a_merge_folds_two_customers_into_one_and_a_hand_picked_primary_moves_to_the_survivor(
    hubspot: Start,
) -> None:
    data = HubSpotData.generate(companies=30, contacts=90, seed=31, billing_share=0.0)
    project = hubspot(data)
    ok(project.sync("--full"))
    survivor, loser = data.ids("companies")[4], data.ids("companies")[11]
    before = project.customers()
    loser_customer = before[loser]
    picked = loser_customer["contacts"][1]
    chosen = project.cli("contacts", "set-primary", loser_customer["id"], picked["id"], "--json")
    assert chosen.code == 0, chosen.stderr
    assert chosen.json()["primary_billing_contact"]["id"] == picked["id"]

    data.merge("companies", survivor, loser)
    merged = counts(project.sync())
    customers = project.customers()
    folded_store = project.snapshot()
    again = counts(project.sync("--full"))

    assert merged["seen"] == 2
    assert customers[survivor]["id"] == customers[loser]["id"] == before[survivor]["id"]
    assert len({c["id"] for c in customers.values()}) == 29
    folded = project.customers()[survivor]
    assert folded["primary_billing_contact"]["external_id"] == picked["external_id"]
    assert folded["ready"] is True
    assert sorted(c["external_id"] for c in folded["contacts"]) == sorted(
        c["external_id"] for c in before[survivor]["contacts"] + loser_customer["contacts"]
    )
    # A full read sees the loser's contacts linked to the survivor now (HubSpot moved the
    # associations): their records changed, the customers they belong to did not.
    assert (again["created"], again["updated"]) == (0, 3)
    assert project.snapshot() == folded_store


def test_an_archived_primary_contact_leaves_its_customer_and_the_primary_is_recomputed(
    hubspot: Start,
) -> None:
    data = HubSpotData.generate(companies=20, contacts=40, seed=32, billing_share=1.0)
    project = hubspot(data)
    ok(project.sync("--full"))
    company = data.ids("companies")[7]
    [billing] = data.billing_contacts(company)
    before = project.customers()[company]
    assert before["primary_billing_contact"]["external_id"] == billing
    [other] = [c["external_id"] for c in before["contacts"] if c["external_id"] != billing]

    data.archive("contacts", billing)
    archived = counts(project.sync())

    after = project.customers()[company]
    assert archived["seen"] == 1
    assert [c["external_id"] for c in after["contacts"]] == [other]
    assert after["primary_billing_contact"]["external_id"] == other  # the sole contact now
    assert after["ready"] is True
