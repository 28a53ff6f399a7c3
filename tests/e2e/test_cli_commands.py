"""The real ``crm-sync`` command: options, help, and the commands that need no config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from crmsync.adapters.store import create_store
from crmsync.adapters.tables import customers
from tests.e2e.conftest import run_cli

pytestmark = pytest.mark.slow

COMMANDS = [
    (),
    ("sync",),
    ("resync",),
    ("runs",),
    ("quarantine",),
    ("quarantine", "clear"),
    ("customers", "list"),
    ("customers", "show"),
    ("customers", "archive"),
    ("customers", "set-tax-status"),
    ("contacts", "add"),
    ("contacts", "set-primary"),
    ("aliases", "add"),
    ("aliases", "remove"),
    ("aliases", "resolve"),
    ("connectors", "list"),
    ("db", "upgrade"),
]


def test_an_unknown_log_level_is_a_usage_error_naming_the_valid_levels(tmp_path: Path) -> None:
    result = run_cli("--log-level", "LOUD", "runs", cwd=tmp_path)

    assert result.code == 2
    assert "Traceback" not in result.stderr
    for level in ("debug", "info", "warning", "error"):
        assert level in result.stderr.lower()


def test_a_log_level_is_accepted_in_any_case(project: Path) -> None:
    result = run_cli("--log-level", "debug", "runs", "--json", cwd=project)

    assert result.code == 0, result.stderr


def test_version_prints_the_installed_version_without_a_config(tmp_path: Path) -> None:
    result = run_cli("--version", cwd=tmp_path)

    assert result.code == 0, result.stderr
    assert re.fullmatch(r"crm-sync \d+\.\d+\.\d+\S*\n", result.stdout)


def test_connectors_list_names_the_installed_types_and_what_they_can_do(
    tmp_path: Path,
) -> None:
    result = run_cli("connectors", "list", "--json", cwd=tmp_path)

    assert result.code == 0, result.stderr
    by_type = {c["type"]: c for c in result.json()}
    assert {"file", "hubspot"} <= set(by_type)
    assert by_type["file"]["description"].startswith("Companies and contacts from CRM export")
    assert by_type["file"]["capabilities"][:2] == ["sync", "fetch"]


def test_connectors_list_works_beside_a_broken_config(tmp_path: Path) -> None:
    (tmp_path / "crm-sync.yaml").write_text("connectors: [this is not a mapping\n")

    result = run_cli("connectors", "list", cwd=tmp_path)

    assert result.code == 0, result.stderr
    assert "hubspot" in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "crm-sync")
def test_help_shows_placeholders_not_python_types(tmp_path: Path, command: tuple[str, ...]) -> None:
    result = run_cli(*command, "--help", cwd=tmp_path, env={"COLUMNS": "120"})

    assert result.code == 0, result.stderr
    assert not re.search(r"<(bool|str|int|list\[[^]]*\])>", result.stdout), result.stdout


def test_set_tax_status_accepts_the_spellings_an_export_uses(project: Path) -> None:
    run_cli("sync", cwd=project)

    result = run_cli("customers", "set-tax-status", "ACC-7781", "Tax Exempt", "--json", cwd=project)

    assert result.code == 0, result.stderr
    assert result.json()["tax_status"] == "TAX_EXEMPT"
    assert result.json()["tax_status_source"] == "manual"


def test_set_tax_status_refuses_an_unknown_status_as_a_usage_error(project: Path) -> None:
    run_cli("sync", cwd=project)

    result = run_cli("customers", "set-tax-status", "ACC-7781", "sometimes", cwd=project)

    assert result.code == 2
    assert "TAX_EXEMPT" in result.stderr


def test_resync_of_ids_the_crm_does_not_have_names_them_and_exits_4(project: Path) -> None:
    run_cli("sync", cwd=project)

    result = run_cli(
        "resync", "sample", "--external-id", "C-9998", "--external-id", "C-9999", cwd=project
    )

    assert result.code == 4
    assert "not in the CRM: C-9998, C-9999" in result.stdout


def test_resync_names_the_missing_ids_and_succeeds_when_some_were_found(project: Path) -> None:
    run_cli("sync", cwd=project)

    result = run_cli(
        "resync",
        "sample",
        "--external-id",
        "C-1034",
        "--external-id",
        "C-9999",
        "--json",
        cwd=project,
    )

    assert result.code == 0, result.stderr
    assert result.json()["runs"][0]["missing"] == ["C-9999"]


def test_resync_takes_companies_and_contacts_in_one_run(project: Path) -> None:
    run_cli("sync", cwd=project)

    result = run_cli(
        "resync", "sample", "--company", "C-1046", "--contact", "P-2095", "--json", cwd=project
    )

    assert result.code == 0, result.stderr
    (run,) = result.json()["runs"]
    assert run["mode"] == "resync"
    assert run["counts"]["seen"] == 2


def test_resync_marks_records_the_crm_no_longer_has_deleted_when_asked(project: Path) -> None:
    run_cli("sync", cwd=project)
    contacts_csv = project / "examples" / "contacts.csv"
    lines = contacts_csv.read_text(encoding="utf-8").splitlines()
    contacts_csv.write_text(
        "\n".join(line for line in lines if not line.startswith("P-2095,")) + "\n",
        encoding="utf-8",
    )

    listed = run_cli("resync", "sample", "--contact", "P-2095", cwd=project)
    assert listed.code == 4  # only named: the store keeps the contact
    kept = run_cli("customers", "show", "sample:C-1046", "--json", cwd=project).json()
    assert "P-2095" in [c.get("external_id") for c in kept["contacts"]]
    marked = run_cli(
        "resync", "sample", "--contact", "P-2095", "--mark-missing-deleted", "--json", cwd=project
    )

    assert marked.code == 0, marked.stderr
    assert marked.json()["runs"][0]["missing"] == ["P-2095"]
    shown = run_cli("customers", "show", "sample:C-1046", "--json", cwd=project).json()
    assert "P-2095" not in [c.get("external_id") for c in shown["contacts"]]


def test_resync_without_any_record_named_is_a_usage_error(project: Path) -> None:
    result = run_cli("resync", "sample", cwd=project)

    assert result.code == 2
    assert "--company" in result.stderr


def test_show_refreshes_a_customer_whose_readiness_waits_for_its_refresh(project: Path) -> None:
    run_cli("sync", cwd=project)
    ready = run_cli("customers", "show", "sample:C-1001", "--json", cwd=project).json()
    assert ready["ready"] is True
    store = create_store(f"sqlite:///{project / 'crm-sync.db'}")
    with store.begin() as conn:  # as a sync page leaves it, before the pass's refresh
        conn.execute(
            sa.update(customers)
            .where(customers.c.id == ready["id"])
            .values(ready=False, refresh_pending=True)
        )
    store.dispose()

    shown = run_cli("customers", "show", "sample:C-1001", "--json", cwd=project).json()

    assert shown["ready"] is True
