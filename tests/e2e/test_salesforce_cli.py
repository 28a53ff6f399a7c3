"""The real ``crm-sync`` command against a fake Salesforce org the test starts on 127.0.0.1.

The fake (``tests/fakes/salesforce.py``) serves OAuth and the REST API over HTTP from a
background thread; the CLI runs as a subprocess configured exactly as a user would
configure it (JWT bearer with a key file, secrets from the environment), and the store
is read back through the CLI (``customers list --json``, ``runs --json``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.conftest import Result, run_cli
from tests.fakes.salesforce import FakeSalesforce, OAuthApp, SalesforceData, run_fake_salesforce

pytestmark = pytest.mark.slow

CONNECTOR = "salesforce"


@dataclass
class Project:
    folder: Path
    fake: FakeSalesforce
    env: dict[str, str]

    @property
    def config(self) -> Path:
        return self.folder / "crm-sync.yaml"

    @property
    def db(self) -> Path:
        return self.folder / "store.db"

    def cli(self, *args: str) -> Result:
        return run_cli("--config", str(self.config), *args, cwd=self.folder, env=self.env)

    def sync(self, *args: str) -> Result:
        return self.cli("sync", CONNECTOR, "--json", *args)

    def customers(self) -> dict[str, dict[str, Any]]:
        """Customers by the Account ids they come from."""
        listed = self.cli("customers", "list", "--json")
        assert listed.code == 0, listed.stderr
        return {
            ref["external_id"]: customer
            for customer in listed.json()
            for ref in customer["external_refs"]
            if ref["object_type"] == "company"
        }


def _key_pair() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


@pytest.fixture
def salesforce(tmp_path: Path) -> Iterator[Any]:
    """``salesforce(data, **fake_options)``: a fake org and a project signing in with JWT."""
    fakes: list[FakeSalesforce] = []
    private, public = _key_pair()

    def start(
        data: SalesforceData, *, settings: dict[str, Any] | None = None, **options: Any
    ) -> Project:
        oauth = OAuthApp(public_key=public, audiences=("https://login.salesforce.com",))
        fake = run_fake_salesforce(data, oauth=oauth, **options)
        fakes.append(fake)
        (tmp_path / "salesforce.key").write_bytes(private)
        section = {
            "type": CONNECTOR,
            "login_url": fake.url,
            "auth": {
                "flow": "jwt_bearer",
                "client_id": "${SALESFORCE_CLIENT_ID}",
                "username": oauth.username,
                "private_key_file": "salesforce.key",
                "audience": "https://login.salesforce.com",
            },
            "accounts": {"tax_status": "Tax_Status__c"},
            "lag_seconds": 0,
            "daily_reserve": 0,
            "timeout_seconds": 10,
            **(settings or {}),
        }
        document = {
            "database_url": f"sqlite:///{tmp_path / 'store.db'}",
            "log_level": "WARNING",
            "connectors": {CONNECTOR: section},
        }
        (tmp_path / "crm-sync.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        return Project(tmp_path, fake, {"SALESFORCE_CLIENT_ID": oauth.client_id})

    yield start
    for fake in fakes:
        fake.stop()


def ok(result: Result) -> dict[str, Any]:
    assert result.code == 0, result.stdout + result.stderr
    data: dict[str, Any] = result.json()
    assert data["runs"][0]["status"] == "succeeded", data
    return data


def test_a_full_sync_creates_every_account_as_a_customer_with_its_billing_contact_as_primary(
    salesforce: Any,
) -> None:
    data = SalesforceData.generate(accounts=40, contacts=200, seed=3, shared=50)
    project = salesforce(data)

    first = ok(project.sync())
    customers = project.customers()

    assert first["runs"][0]["counts"]["created"] == 240
    assert len(customers) == 40
    for account_id, customer in customers.items():
        relations = [
            row for row in data.tables["AccountContactRelation"].rows.values()
            if row["AccountId"] == account_id and row["Roles"] == "Billing Contact"
        ]  # fmt: skip
        primary = customer["primary_billing_contact"]
        if relations:
            assert primary is not None
            assert primary["external_id"] == relations[0]["ContactId"]
            assert customer["ready"], customer["blocked_reasons"]
        assert customer["billing_address"]["country"] == "DE"
    assert ok(project.sync())["runs"][0]["counts"]["updated"] == 0


def _into_the_next_second() -> None:
    """Wait (at most a second) until the wall clock's second changes."""
    second = int(time.time())
    tick = threading.Event()
    while int(time.time()) == second:
        tick.wait(0.01)


def test_an_incremental_run_applies_changes_deletions_and_merges(salesforce: Any) -> None:
    data = SalesforceData.generate(accounts=30, contacts=90, seed=4)
    project = salesforce(data)
    ok(project.sync())
    accounts = sorted(data.tables["Account"].rows)
    # A pass reads from the last run's start up to its own, to the whole second (as
    # Salesforce stamps): a change made in the second a run starts belongs to the next
    # run. Make the changes in a second of their own, between the two runs' seconds.
    _into_the_next_second()
    data.update("Account", accounts[0], Name="Renamed GmbH")
    data.purge("Account", accounts[1])
    data.merge("Account", accounts[3], accounts[2])
    _into_the_next_second()
    project.fake.requests.reset()

    ok(project.sync())
    customers = project.customers()

    assert customers[accounts[0]]["company_name"] == "Renamed GmbH"
    deleted = customers[accounts[1]]
    assert deleted["company_name"] == "Account 0000001 GmbH"  # fields stay; only the mark moves
    assert "source_deleted" in {r["code"] for r in deleted["blocked_reasons"]}
    assert customers[accounts[2]]["id"] == customers[accounts[3]]["id"]
    assert project.fake.requests.by_endpoint["GET deleted"] == 2


def test_the_daily_limit_ends_the_run_with_exit_75_and_the_next_run_resumes(
    salesforce: Any,
) -> None:
    data = SalesforceData.generate(accounts=500, contacts=2_500, seed=5)
    project = salesforce(data, daily_limit=20, settings={"page_size": 200})

    stopped = project.sync("--full")

    assert stopped.code == 75, stopped.stdout + stopped.stderr
    run = stopped.json()["runs"][0]
    assert run["status"] == "rate_limited"
    assert "daily" in run["error"].lower()
    with sqlite3.connect(f"file:{project.db}?mode=ro", uri=True) as conn:
        saved = conn.execute(
            "SELECT json_extract(cursor, '$.position') FROM sync_state WHERE stream = 'contact'"
        ).fetchone()
    assert saved is not None
    assert str(saved[0]).startswith("accounts:")  # full passes read contacts by account
    project.fake.daily_limit = 5_000_000

    resumed = ok(project.sync())

    assert resumed["runs"][0]["counts"]["seen"] < 3_000 - run["counts"]["seen"] + 400
    assert len(project.customers()) == 500


def test_secrets_never_appear_in_the_output_even_at_debug_level(salesforce: Any) -> None:
    project = salesforce(SalesforceData.generate(accounts=5, contacts=10, seed=6))

    result = project.cli("--log-level", "DEBUG", "sync", CONNECTOR, "--json")

    assert result.code == 0, result.stderr
    output = result.stdout + result.stderr
    for token in project.fake.sessions:
        assert token not in output
    assert "PRIVATE KEY" not in output
