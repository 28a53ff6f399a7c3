"""The real ``crm-sync`` command against a fake Pipedrive the test starts on 127.0.0.1.

Each test runs the fake in-process (``tests/fakes/pipedrive.py``, served by uvicorn in a
background thread) and the CLI as a subprocess that talks to it over HTTP, exactly as a
user's ``crm-sync --config crm-sync.yaml sync pipedrive`` would talk to Pipedrive. The
store is read back through the CLI (``customers list --json``, ``runs --json``) or, to
compare two runs, directly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from crmsync.adapters.store import create_store
from tests.e2e.conftest import Result, run_cli
from tests.fakes.pipedrive import (
    DEFAULT_TOKEN,
    FakePipedrive,
    OAuthConfig,
    PipedriveData,
    run_fake_pipedrive,
)
from tests.support.snapshot import snapshot

pytestmark = pytest.mark.slow

CONNECTOR = "pipedrive"
PERSONS_LIST = "GET /api/v2/persons"


@dataclass
class Project:
    """A working directory whose ``crm-sync.yaml`` points the ``pipedrive`` connector at a fake."""

    folder: Path
    fake: FakePipedrive
    env: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)
    log_level: str = "WARNING"

    @property
    def config(self) -> Path:
        return self.folder / "crm-sync.yaml"

    @property
    def db(self) -> Path:
        return self.folder / "store.db"

    def write_config(self) -> None:
        section: dict[str, Any] = {
            "type": "pipedrive",
            "base_url": self.fake.url,
            "api_token": "${PIPEDRIVE_API_TOKEN}",
            "requests_per_window": None,
            "timeout_seconds": 10,
            "organizations": {"tax_status_field": "Tax status", "alias_fields": ["Account ID"]},
            **self.settings,
        }
        document = {
            "database_url": f"sqlite:///{self.db}",
            "log_level": self.log_level,
            "connectors": {CONNECTOR: section},
        }
        self.config.write_text(yaml.safe_dump(document, sort_keys=False))

    def cli(self, *args: str) -> Result:
        return run_cli("--config", str(self.config), *args, cwd=self.folder, env=self.env)

    def sync(self, *args: str) -> Result:
        return self.cli("sync", CONNECTOR, "--json", *args)

    def customers(self) -> dict[str, dict[str, Any]]:
        """Customers by the Pipedrive organization ids they come from (every id of a folded one)."""
        listed = self.cli("customers", "list", "--json")
        assert listed.code == 0, listed.stderr
        found: dict[str, dict[str, Any]] = {}
        for customer in listed.json():
            for ref in customer["external_refs"]:
                found[ref["external_id"]] = customer
        return found

    def snapshot(self) -> dict[str, Any]:
        store = create_store(f"sqlite:///{self.db}")
        try:
            return snapshot(store)
        finally:
            store.dispose()

    def cursor_position(self, stream: str) -> str | None:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            row = conn.execute(
                "SELECT json_extract(cursor, '$.position') FROM sync_state WHERE stream = ?",
                (stream,),
            ).fetchone()
        return None if row is None else row[0]


Start = Callable[..., Project]


@pytest.fixture
def pipedrive(tmp_path: Path) -> Iterator[Start]:
    """``pipedrive(data, settings={...}, **fake_options)``: start a fake and a project on it."""
    fakes: list[FakePipedrive] = []

    def start(
        data: PipedriveData, *, settings: dict[str, Any] | None = None, **options: Any
    ) -> Project:
        fake = run_fake_pipedrive(data, **options)
        fakes.append(fake)
        env = {"PIPEDRIVE_API_TOKEN": fake.token or "unused"}
        project = Project(tmp_path, fake, env, dict(settings or {}))
        project.write_config()
        return project

    yield start
    for fake in fakes:
        fake.stop()


def ok(result: Result) -> dict[str, Any]:
    assert result.code == 0, result.stdout + result.stderr
    data: dict[str, Any] = result.json()
    return data


def counts(result: Result) -> dict[str, int]:
    run = ok(result)["runs"][0]
    assert run["status"] == "succeeded", run
    totals: dict[str, int] = run["counts"]
    return totals


def test_a_full_sync_creates_every_customer_with_the_labelled_billing_contact_and_a_second_changes_nothing(  # noqa: E501
    pipedrive: Start,
) -> None:
    data = PipedriveData.generate(organizations=60, persons=240, seed=11, billing_share=0.6)
    project = pipedrive(data)

    first = counts(project.sync("--full"))
    customers = project.customers()
    before = project.snapshot()
    second = counts(project.sync("--full"))

    assert first["created"] == first["seen"] == 300
    assert set(customers) == {str(i) for i in range(1, 61)}
    labelled = 0
    for org_id, customer in customers.items():
        billing = data.billing_contacts(int(org_id))
        primary = customer["primary_billing_contact"]
        if billing:
            labelled += 1
            assert primary["external_id"] == str(billing[0])
            assert primary["email"] == f"person{billing[0]}@example.com"
            assert customer["ready"] is True, customer["blocked_reasons"]
        elif len(customer["contacts"]) > 1:
            assert primary is None
            codes = [reason["code"] for reason in customer["blocked_reasons"]]
            assert codes == ["no_primary_billing_contact"]
    assert 20 < labelled < 55
    assert any(a["value"] == "ACC-7" for a in customers["7"]["aliases"])
    assert (second["seen"], second["created"], second["updated"]) == (300, 0, 0)
    assert project.snapshot() == before


def test_an_incremental_run_picks_up_exactly_the_records_changed_since_the_last_run(
    pipedrive: Start,
) -> None:
    data = PipedriveData.generate(organizations=40, persons=200, seed=12)
    project = pipedrive(data)
    ok(project.sync("--full"))
    data.update("organizations", 3, name="Renamed Drei GmbH")
    data.update("persons", 150, name="Changed Person")
    new_org = data.add("organizations", name="Brand New AG", address=None)

    changed = counts(project.sync())
    customers = project.customers()

    assert changed["seen"] == 3
    assert changed["created"] == 1
    assert customers["3"]["company_name"] == "Renamed Drei GmbH"
    assert customers[str(new_org)]["company_name"] == "Brand New AG"
    shown = [c for cus in customers.values() for c in cus["contacts"] if c["external_id"] == "150"]
    assert [c["name"] for c in shown] == ["Changed Person"]
    assert counts(project.sync())["seen"] == 0


def test_an_organization_deleted_with_only_its_id_holds_its_customer_as_source_deleted(
    pipedrive: Start,
) -> None:
    data = PipedriveData.generate(organizations=20, persons=40, seed=13)
    project = pipedrive(data)
    ok(project.sync("--full"))
    data.delete("organizations", 5, id_only=True)

    changed = counts(project.sync())
    customer = project.customers()["5"]

    assert changed["seen"] == 1
    assert customer["company_name"] == "Organization 5 GmbH"
    assert customer["external_refs"][0]["deleted_in_source"] is True
    assert "source_deleted" in [reason["code"] for reason in customer["blocked_reasons"]]
    assert customer["ready"] is False


def test_a_merge_folds_the_losers_customer_into_the_survivors(pipedrive: Start) -> None:
    data = PipedriveData.generate(organizations=20, persons=80, seed=14)
    project = pipedrive(data)
    ok(project.sync("--full"))
    before = project.customers()
    loser_contacts = {c["external_id"] for c in before["4"]["contacts"]}

    data.merge("organizations", 4, 9)
    counts(project.sync())
    after = project.customers()

    assert after["4"]["id"] == after["9"]["id"] == before["9"]["id"]
    assert len({c["id"] for c in after.values()}) == 19
    survivor_contacts = {c["external_id"] for c in after["9"]["contacts"]}
    assert loser_contacts <= survivor_contacts


def test_a_spent_daily_budget_ends_the_run_with_exit_75_and_the_next_run_resumes(
    pipedrive: Start,
) -> None:
    data = PipedriveData.generate(organizations=300, persons=2_000, seed=15)
    project = pipedrive(data, daily_limit=8, settings={"page_size": 100})

    stopped = project.sync("--full")

    assert stopped.code == 75, stopped.stdout + stopped.stderr
    run = stopped.json()["runs"][0]
    assert run["status"] == "rate_limited"
    assert "daily" in run["error"].lower()
    assert 0 < run["counts"]["seen"] < 2_300
    saved = [project.cursor_position(stream) for stream in ("company", "contact")]
    assert any(position is not None for position in saved)
    project.fake.daily_limit = None
    project.fake.requests.reset()

    resumed = counts(project.sync())

    assert resumed["seen"] <= 2_300 - run["counts"]["seen"] + 200
    assert project.fake.requests.by_endpoint[PERSONS_LIST] < 21  # did not start over
    assert len(project.customers()) == 300
    assert [project.cursor_position(stream) for stream in ("company", "contact")] == [None, None]


def test_an_expired_oauth_token_is_refreshed_once_and_the_run_goes_on(pipedrive: Start) -> None:
    data = PipedriveData.generate(organizations=200, persons=1_000, seed=16)
    app = OAuthConfig(client_id="e2e-client", client_secret="e2e-secret-4711")
    project = pipedrive(data, token=None, oauth=app)
    project.settings.update(
        api_token=None,
        page_size=100,
        oauth={
            "client_id": app.client_id,
            "client_secret": "${PIPEDRIVE_CLIENT_SECRET}",
            "refresh_token": "${PIPEDRIVE_REFRESH_TOKEN}",
            "token_url": project.fake.url + "/oauth/token",
        },
    )
    project.write_config()
    project.env.update(
        PIPEDRIVE_CLIENT_SECRET=app.client_secret, PIPEDRIVE_REFRESH_TOKEN=app.refresh_token
    )
    project.fake.expire_tokens_after = 5

    result = counts(project.sync("--full"))

    assert result["created"] == 1_200
    assert project.fake.requests.by_endpoint["POST /oauth/token"] == 2
    assert project.fake.requests.by_status[401] >= 1
    assert app.client_secret not in project.config.read_text()


def test_the_api_token_never_appears_in_the_output_even_at_debug_level(pipedrive: Start) -> None:
    data = PipedriveData.generate(organizations=5, persons=10, seed=17)
    project = pipedrive(data)
    project.log_level = "DEBUG"
    project.write_config()

    result = project.sync()

    assert result.code == 0, result.stderr
    assert "DEBUG" in result.stderr or result.stderr == ""
    assert DEFAULT_TOKEN not in result.stdout + result.stderr
