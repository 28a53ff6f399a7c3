"""The real ``crm-sync`` command on the bundled sample export."""

from __future__ import annotations

import csv
import signal
import subprocess
import time
from pathlib import Path

import pytest

from crmsync.adapters.store import create_store
from tests.e2e.conftest import CLI, run_cli
from tests.support.progress import records_committed
from tests.support.snapshot import snapshot

pytestmark = pytest.mark.slow


def test_the_quick_start_sync_prints_who_is_ready_and_who_is_held(project: Path) -> None:
    # the project's copy of config.example.yaml: its store is made beside it, not in the repo
    result = run_cli("--config", str(project / "crm-sync.yaml"), "sync", cwd=project)

    assert result.code == 0, result.stderr
    assert "36 ready to bill" in result.stdout
    assert "13 held" in result.stdout
    assert "no_primary_billing_contact" in result.stdout
    assert "Quarantined records: 2" in result.stdout


def test_sync_json_reports_runs_customers_and_quarantine(project: Path) -> None:
    result = run_cli("sync", "--json", cwd=project)

    assert result.code == 0, result.stderr
    data = result.json()
    assert data["runs"][0]["status"] == "succeeded"
    assert data["runs"][0]["counts"]["quarantined"] == 2
    assert data["customers"]["ready"] == 36
    assert data["customers"]["blocked_by_reason"] == {
        "incomplete_billing_address": 4,
        "no_primary_billing_contact": 4,
        "alias_conflict": 2,
        "ambiguous_primary_billing_contact": 1,
        "primary_contact_invalid_email": 1,
        "primary_contact_without_email": 1,
    }
    assert data["quarantined"] == 2


def test_a_second_sync_of_the_same_export_changes_nothing(project: Path) -> None:
    run_cli("sync", cwd=project)
    second = run_cli("sync", "--full", "--json", cwd=project).json()

    counts = second["runs"][0]["counts"]
    assert (counts["created"], counts["updated"]) == (0, 0)


def test_a_person_fixes_a_held_customer_from_the_cli(project: Path) -> None:
    run_cli("sync", cwd=project)
    held = [
        c
        for c in run_cli("customers", "list", "--blocked", "--json", cwd=project).json()
        if c["blocked_reasons"][0]["code"] == "no_primary_billing_contact"
        and len(c["contacts"]) > 1
    ]
    customer = held[0]
    email = customer["contacts"][1]["email"]

    picked = run_cli("contacts", "set-primary", customer["id"], email, "--json", cwd=project)

    assert picked.code == 0, picked.stderr
    assert picked.json()["primary_billing_contact"]["email"] == email
    assert picked.json()["ready"] is True
    again = run_cli("sync", "--full", cwd=project)
    assert again.code == 0
    shown = run_cli("customers", "show", customer["id"], "--json", cwd=project).json()
    assert shown["primary_billing_contact"]["email"] == email


def test_customer_json_has_the_documented_shape(project: Path) -> None:
    run_cli("sync", cwd=project)

    data = run_cli("customers", "show", "ACC-7781", "--json", cwd=project).json()

    assert set(data) >= {
        "id",
        "company_name",
        "tax_status",
        "billing_address",
        "primary_billing_contact",
        "contacts",
        "aliases",
        "external_refs",
        "ready",
        "blocked_reasons",
        "archived_at",
    }
    assert set(data["billing_address"]) == {
        "line1",
        "line2",
        "city",
        "state",
        "postal_code",
        "country",
    }
    assert all("billing_preference" in c for c in data["contacts"])
    assert data["id"] in [a["value"] for a in data["aliases"]]


def test_aliases_resolve_and_conflicts_exit_with_their_own_code(project: Path) -> None:
    run_cli("sync", cwd=project)
    first = run_cli("aliases", "resolve", "ACC-7781", cwd=project).stdout.strip()
    other = run_cli("aliases", "resolve", "ACC-10003", cwd=project).stdout.strip()

    taken = run_cli("aliases", "add", other, "acc-7781", cwd=project)
    assert taken.code == 5
    assert "differs only by case" in taken.stderr
    assert run_cli("aliases", "add", other, "usage-key-1", cwd=project).code == 0
    assert run_cli("aliases", "resolve", "usage-key-1", cwd=project).stdout.strip() == other
    assert run_cli("aliases", "resolve", first, cwd=project).stdout.strip() == first
    assert run_cli("aliases", "remove", "usage-key-1", cwd=project).code == 0
    assert run_cli("aliases", "resolve", "usage-key-1", cwd=project).code == 4


def test_archiving_from_the_cli_holds_the_customer(project: Path) -> None:
    run_cli("sync", cwd=project)
    customer = run_cli("aliases", "resolve", "ACC-10003", cwd=project).stdout.strip()

    archived = run_cli("customers", "archive", customer, "--json", cwd=project)

    assert archived.code == 0
    assert archived.json()["already_archived"] is False
    shown = run_cli("customers", "show", customer, "--json", cwd=project).json()
    assert [r["code"] for r in shown["blocked_reasons"]] == ["archived"]


def test_runs_and_quarantine_are_listed(project: Path) -> None:
    run_cli("sync", cwd=project)

    runs = run_cli("runs", "--json", cwd=project).json()
    bad = run_cli("quarantine", "--json", cwd=project).json()

    assert runs[0]["status"] == "succeeded"
    assert sorted(b["object_type"] for b in bad) == ["company", "contact"]
    assert all(b["reason"] for b in bad)


def test_a_bad_config_names_the_key_and_exits_3(project: Path) -> None:
    (project / "crm-sync.yaml").write_text(
        "connectors:\n  sample:\n    type: file\n    page_sise: 10\n"
    )

    result = run_cli("sync", cwd=project)

    assert result.code == 3
    assert "crm-sync.yaml: connectors.sample" in result.stderr


def test_usage_errors_exit_2_and_unknown_customers_exit_4(project: Path) -> None:
    assert run_cli("sync", "--frobnicate", cwd=project).code == 2
    assert run_cli("customers", "show", "nobody", cwd=project).code == 4
    assert run_cli("sync", "nonexistent", cwd=project).code == 3


def _big_export(folder: Path, companies: int) -> None:
    with (folder / "companies.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "id",
                "name",
                "address_line1",
                "city",
                "postal_code",
                "country",
                "aliases",
                "updated_at",
            ]
        )
        for i in range(companies):
            w.writerow(
                [
                    f"C{i}",
                    f"Company {i}",
                    f"{i} High St",
                    "Leeds",
                    "LS1 1AA",
                    "GB",
                    f"acct-{i}",
                    f"2026-01-01T00:{i % 60:02d}:00Z",
                ]
            )
    with (folder / "contacts.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "email", "company_id", "billing_contact", "updated_at"])
        for i in range(companies * 3):
            w.writerow(
                [
                    f"P{i}",
                    f"Person {i}",
                    f"p{i}@example.com",
                    f"C{i % companies}",
                    "yes" if i % 4 == 0 else "",
                    "2026-01-01T00:00:00Z",
                ]
            )


def _config(folder: Path, db: str) -> Path:
    path = folder / f"{db}.yaml"
    path.write_text(
        f"database_url: sqlite:///{folder / db}.db\nconnectors:\n  big:\n    type: file\n"
        "    page_size: 25\n    companies: {path: companies.csv}\n"
        "    contacts: {path: contacts.csv}\n"
    )
    return path


@pytest.mark.parametrize("kill_after", [200, 1500, 3500])
def test_a_sync_killed_mid_way_and_run_again_ends_exactly_as_a_clean_run(
    tmp_path: Path, kill_after: int
) -> None:
    _big_export(tmp_path, 1200)
    victim = subprocess.Popen(
        [str(CLI), "--config", str(_config(tmp_path, "killed")), "sync"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while records_committed(tmp_path / "killed.db") < kill_after and victim.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the sync finished before it could be killed"

    resumed = run_cli("--config", str(_config(tmp_path, "killed")), "sync", "--json", cwd=tmp_path)
    clean = run_cli("--config", str(_config(tmp_path, "clean")), "sync", cwd=tmp_path)
    assert resumed.code == 0, resumed.stderr
    assert clean.code == 0, clean.stderr

    runs = run_cli(
        "--config", str(_config(tmp_path, "killed")), "runs", "--json", cwd=tmp_path
    ).json()
    assert runs[-1]["status"] == "abandoned"
    killed_store = create_store(f"sqlite:///{tmp_path / 'killed.db'}")
    clean_store = create_store(f"sqlite:///{tmp_path / 'clean.db'}")
    assert snapshot(killed_store) == snapshot(clean_store)
    assert resumed.json()["customers"]["customers"] == 1200


def test_resync_reimports_a_record_fixed_in_the_crm(project: Path) -> None:
    run_cli("sync", cwd=project)
    companies = project / "examples" / "companies.csv"
    rows = companies.read_text(encoding="utf-8").splitlines()
    row = next(i for i, line in enumerate(rows) if line.startswith("C-1034,"))
    cells = next(csv.reader([rows[row]]))
    cells[6] = "90401"  # the postal code that was missing
    cells[10] = "2026-06-01T00:00:00Z"
    rows[row] = ",".join(f'"{c}"' if "," in c else c for c in cells)
    companies.write_text("\n".join(rows) + "\n", encoding="utf-8")

    result = run_cli("resync", "sample", "--external-id", "C-1034", "--json", cwd=project)

    assert result.code == 0, result.stderr
    assert result.json()["runs"][0]["counts"]["updated"] == 1
    listed = run_cli("customers", "list", "--json", cwd=project).json()
    shown = next(c for c in listed if c["external_refs"][0]["external_id"] == "C-1034")
    assert shown["billing_address"]["postal_code"] == "90401"
    assert shown["ready"] is True
