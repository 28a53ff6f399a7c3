"""The real ``crm-sync push`` against the fake Sequence the test starts on 127.0.0.1.

The sample project is synced from its export, then pushed: the CLI runs as a
subprocess and talks HTTP to the fake, which validates every request against
Sequence's OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli
from tests.fakes.sequence import FakeSequence, run_fake_sequence

pytestmark = pytest.mark.slow

EXIT_HELD = 8


@pytest.fixture
def fake() -> Iterator[FakeSequence]:
    with run_fake_sequence() as running:
        yield running
        assert [(r.endpoint, r.problem) for r in running.invalid_requests] == []


@pytest.fixture
def synced(project: Path, fake: FakeSequence) -> tuple[Path, dict[str, str]]:
    """The sample project, synced, with a ``billing:`` section pointing at the fake."""
    config = project / "crm-sync.yaml"
    config.write_text(
        config.read_text(encoding="utf-8")
        + "\nbilling:\n"
        + f"  base_url: {fake.url}\n"
        + "  username: ${SEQUENCE_CLIENT_ID}\n"
        + "  password: ${SEQUENCE_CLIENT_SECRET}\n"
        + "  requests_per_minute: 100000\n",
        encoding="utf-8",
    )
    env = {"SEQUENCE_CLIENT_ID": fake.username, "SEQUENCE_CLIENT_SECRET": fake.password}
    result = run_cli("sync", "sample", cwd=project, env=env)
    assert result.code == 0, result.stderr
    return project, env


def test_push_creates_ready_customers_lists_held_ones_and_a_second_push_sends_nothing(
    synced: tuple[Path, dict[str, str]], fake: FakeSequence
) -> None:
    folder, env = synced

    first = run_cli("push", "--json", cwd=folder, env=env)

    assert first.code == EXIT_HELD, first.stderr
    data = first.json()
    created = data["counts"]["created"]
    assert created > 0
    assert data["counts"]["failed"] == data["counts"]["conflict"] == 0
    assert len(fake.data.customers) == created
    assert fake.by_endpoint["POST /customers"] == created
    assert data["requests_sent"] == 2 * created
    held = data["held"]
    assert held
    assert all(h["reasons"] for h in held)
    sent_names = {c["legalName"] for c in fake.data.customers.values()}
    assert not sent_names & {h["name"] for h in held}
    assert not any(fake.data.alias_owner(h["customer_id"]) for h in held)
    assert fake.password not in first.stdout + first.stderr
    for pushed in data["customers"]:
        assert pushed["outcome"] == "created"
        assert fake.data.alias_owner(pushed["alias"]) == pushed["billing_customer_id"]

    before = len(fake.requests)
    second = run_cli("push", "--json", cwd=folder, env=env)

    assert second.code == EXIT_HELD, second.stderr
    assert second.json()["counts"]["unchanged"] == created
    assert second.json()["customers"] == []
    assert len(fake.requests) == before

    one = data["customers"][0]["alias"]
    only = run_cli("push", "--customer", one, cwd=folder, env=env)
    assert only.code == 0, only.stderr
    assert "0 created" in only.stdout
    assert "1 unchanged" in only.stdout
    assert len(fake.requests) == before


def test_dry_run_prints_the_requests_and_sends_nothing(
    synced: tuple[Path, dict[str, str]], fake: FakeSequence
) -> None:
    folder, env = synced

    result = run_cli("push", "--dry-run", "--json", cwd=folder, env=env)

    assert result.code == EXIT_HELD, result.stderr
    data = result.json()
    assert data["dry_run"] is True
    assert data["counts"]["planned"] > 0
    assert data["counts"]["created"] == 0
    assert fake.requests == []
    first = data["customers"][0]
    assert [r["method"] for r in first["requests"]] == ["GET", "POST"]
    assert first["requests"][1]["body"]["customerAliases"][0] == first["alias"]
    brazil = next(c for c in data["customers"] if c["alias"] == "sample:company:C-1004")
    assert "state" not in brazil["requests"][1]["body"]["address"]  # only US/CA take one

    text = run_cli("push", "--dry-run", cwd=folder, env=env)
    assert text.code == EXIT_HELD
    assert "POST /customers" in text.stdout
    assert "Held customers" in text.stdout
    assert fake.requests == []

    # a real push afterwards creates what the dry run listed
    pushed = run_cli("push", "--json", cwd=folder, env=env)
    assert pushed.json()["counts"]["created"] == data["counts"]["planned"]


def test_rejected_credentials_stop_the_push_with_exit_1_and_never_print_the_secret(
    synced: tuple[Path, dict[str, str]], fake: FakeSequence
) -> None:
    folder, env = synced
    wrong = env | {"SEQUENCE_CLIENT_SECRET": "wrong-secret-5e1f"}

    result = run_cli("push", "--json", cwd=folder, env=wrong)

    assert result.code == 1, result.stderr
    data = result.json()
    assert data["stopped"]
    assert data["counts"]["failed"] == 1
    assert len(data["customers"]) == 1  # the first refusal stops the push
    assert fake.data.customers == {}
    assert "wrong-secret-5e1f" not in result.stdout + result.stderr


def test_customers_show_names_the_billing_customer_and_whether_it_is_up_to_date(
    synced: tuple[Path, dict[str, str]], fake: FakeSequence
) -> None:
    folder, env = synced
    pushed = run_cli("push", "--json", cwd=folder, env=env).json()["customers"][0]
    held = run_cli("push", "--json", cwd=folder, env=env).json()["held"][0]

    shown = run_cli("customers", "show", pushed["alias"], "--json", cwd=folder, env=env).json()
    text = run_cli("customers", "show", pushed["alias"], cwd=folder, env={**env, "COLUMNS": "300"})
    never = run_cli("customers", "show", held["customer_id"], "--json", cwd=folder, env=env)

    assert shown["billing"]["billing_customer_id"] == pushed["billing_customer_id"]
    assert shown["billing"]["up_to_date"] is True
    assert shown["billing"]["last_outcome"] == "created"
    assert pushed["billing_customer_id"] in text.stdout
    assert "up to date" in text.stdout
    assert never.json()["billing"] is None
