"""Text from a CRM or a file is data: the CLI prints it literally and never crashes on it.

A CRM export whose names, ids and values hold terminal markup (``[/]``, ``[link=...]``)
and raw escape bytes is synced; every command that shows them must print them as
they are, with control characters escaped (``\\x1b`` shown as four characters).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Result, run_cli

pytestmark = pytest.mark.slow

ESC = "\x1b"
NAMES = {
    "C-1": "Bad [/] Co",
    "C-2": "Widgets [old] [/old] Ltd",
    "C-3": "[link=https://evil.example/]Click me[/link]",
    "C-4": f"Paint {ESC}[31mRed{ESC}[0m :smile: Inc",
}
HEADER = "id,name,address_line1,city,postal_code,country,tax_status,updated_at\n"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose CRM export is full of markup and escape bytes; synced once."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    rows = [
        f'{cid},"{name}",1 Main St,Leeds,LS1 1AA,GB,TAXED,2026-01-01T00:00:00Z\n'
        for cid, name in NAMES.items()
    ]
    # a record the connector cannot read: quarantined, with markup in its id and reason
    rows.append("Q-[/],Broken [/] Ltd,1 Main St,Leeds,LS1 1AA,GB,TAXED,[/]not-a-date\n")
    (tmp_path / "companies.csv").write_text(HEADER + "".join(rows), encoding="utf-8")
    (tmp_path / "contacts.csv").write_text(
        "id,name,email,company_id,billing_contact,updated_at\n"
        f"P-1,Eve {ESC}]8;;https://evil.example{ESC}\\,eve@example.com,C-1,yes,"
        "2026-01-01T00:00:00Z\n",
        encoding="utf-8",
    )
    (tmp_path / "crm-sync.yaml").write_text(
        "database_url: sqlite:///store.db\nlog_level: WARNING\nconnectors:\n"
        "  crm:\n    type: file\n    companies: {path: companies.csv}\n"
        "    contacts: {path: contacts.csv}\n"
        # a connector whose file is missing: its run fails with the path in the error
        "  gone:\n    type: file\n    companies: {path: 'missing [/] dir/companies.csv'}\n"
        "    contacts: {path: contacts.csv}\n",
        encoding="utf-8",
    )
    first = run_cli("sync", "crm", cwd=tmp_path)
    assert first.code == 0, first.stderr
    return tmp_path


def _customer_id(project: Path, external_id: str) -> str:
    listed = run_cli("customers", "list", "--json", cwd=project).json()
    return next(
        str(c["id"])
        for c in listed
        if any(r["external_id"] == external_id for r in c["external_refs"])
    )


def _printed(result: Result) -> str:
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


WIDE = {"COLUMNS": "300"}  # long names on one line, whatever width the test runner has


def test_customers_list_prints_names_holding_markup_as_they_are(hostile: Path) -> None:
    printed = _printed(run_cli("customers", "list", cwd=hostile, env=WIDE))

    assert "Bad [/] Co" in printed
    assert "Widgets [old] [/old] Ltd" in printed
    assert "[link=https://evil.example/]Click me[/link]" in printed


def test_customers_show_prints_a_name_holding_markup_as_it_is(hostile: Path) -> None:
    printed = _printed(run_cli("customers", "show", _customer_id(hostile, "C-1"), cwd=hostile))

    assert "Bad [/] Co" in printed


def test_escape_bytes_from_the_crm_are_shown_as_text_and_never_reach_the_terminal(
    hostile: Path,
) -> None:
    listed = _printed(run_cli("customers", "list", cwd=hostile, env=WIDE))
    shown = _printed(
        run_cli("customers", "show", _customer_id(hostile, "C-1"), cwd=hostile, env=WIDE)
    )

    assert ESC not in listed + shown
    assert r"Paint \x1b[31mRed\x1b[0m :smile: Inc" in listed
    assert "Eve \\x1b]8;;https://evil.example\\x1b\\" in shown


def test_a_link_in_crm_text_is_not_made_clickable_on_a_colour_terminal(hostile: Path) -> None:
    printed = _printed(run_cli("customers", "list", cwd=hostile, env={"FORCE_COLOR": "1", **WIDE}))

    assert f"{ESC}]8;" not in printed  # the OSC 8 hyperlink sequence
    assert "[link=https://evil.example/]Click" in printed


def test_quarantine_prints_ids_and_reasons_holding_markup_as_they_are(hostile: Path) -> None:
    printed = _printed(run_cli("quarantine", cwd=hostile))

    assert "Q-[/]" in printed
    assert "[/]not-a-date" in printed


def test_sync_prints_a_run_error_holding_markup_as_it_is(hostile: Path) -> None:
    result = run_cli("sync", "gone", cwd=hostile)

    assert result.code == 1
    assert "Traceback" not in result.stderr
    assert "missing [/] dir" in result.stdout


def test_runs_prints_a_run_error_holding_markup_as_it_is(hostile: Path) -> None:
    run_cli("sync", "gone", cwd=hostile)

    printed = _printed(run_cli("runs", cwd=hostile, env={"COLUMNS": "500"}))

    assert "missing [/] dir" in printed


def test_sync_prints_held_customers_with_markup_in_their_names_as_they_are(
    hostile: Path,
) -> None:
    printed = _printed(run_cli("sync", "crm", "--full", cwd=hostile))

    assert "Widgets [old] [/old] Ltd" in printed
