"""Where held customers are listed, the CLI says which CRM record each comes from and why
it is held, in words a billing person understands, within an 80-column terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli

pytestmark = pytest.mark.slow

NARROW = {"COLUMNS": "80"}


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The sample project after its first sync, and what that sync printed (80 columns)."""
    folder = tmp_path_factory.mktemp("held")
    root = Path(__file__).resolve().parents[2]
    (folder / "crm-sync.yaml").write_text(
        (root / "config.example.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (folder / "examples").mkdir()
    for name in ("companies.csv", "contacts.csv"):
        (folder / "examples" / name).write_bytes((root / "examples" / name).read_bytes())
    result = run_cli("sync", cwd=folder, env=NARROW)
    assert result.code == 0, result.stderr
    return folder, result.stdout


def _lines_fit(text: str, width: int = 80) -> bool:
    return all(len(row) <= width for row in text.splitlines())


def _rows(text: str) -> dict[str, list[str]]:
    """The rows of the tables in ``text`` by their first cell, each cell's wrapped lines
    joined with spaces (several rows with one first cell: the cells of the last)."""
    rows: dict[str, list[str]] = {}
    current: list[list[str]] = []
    for printed in text.splitlines():
        if not printed.startswith("│"):
            current = []
            continue
        cells = [cell.strip() for cell in printed.strip("│").split("│")]
        if cells[0] or not current:
            current = [[cell] for cell in cells]
            rows[cells[0]] = [""] * len(cells)
            key = cells[0]
        else:
            for parts, cell in zip(current, cells, strict=True):
                parts.append(cell)
        rows[key] = [" ".join(p for p in parts if p) for parts in current]
    return rows


def test_sync_lists_held_customers_with_their_crm_record_and_reason(
    synced: tuple[Path, str],
) -> None:
    _, printed = synced

    rows = _rows(printed)
    assert rows["sample:C-1036"] == [
        "sample:C-1036",
        "Desert Bloom Nurseries",
        "Incomplete address: missing state (required for US)",
    ]
    assert rows["sample:C-1030"][2] == "No primary billing contact"


def test_sync_lists_the_first_ten_held_customers_and_says_how_to_see_the_rest(
    synced: tuple[Path, str],
) -> None:
    _, printed = synced

    assert "... and 3 more: crm-sync customers list --blocked" in printed
    assert printed.count("sample:C-") == 10


def test_sync_output_fits_an_80_column_terminal(synced: tuple[Path, str]) -> None:
    _, printed = synced

    assert _lines_fit(printed)


def test_customers_list_shows_crm_record_and_reason_in_80_columns(
    synced: tuple[Path, str],
) -> None:
    folder, _ = synced

    result = run_cli("customers", "list", cwd=folder, env=NARROW)

    assert result.code == 0, result.stderr
    assert _lines_fit(result.stdout)
    rows = _rows(result.stdout)
    assert rows["sample:C-1036"] == [
        "sample:C-1036",
        "Desert Bloom Nurseries",
        "Incomplete address: missing state (required for US)",
    ]
    assert rows["sample:C-1001"][2] == "ready"


def test_customers_list_blocked_groups_held_customers_by_reason(
    synced: tuple[Path, str],
) -> None:
    folder, _ = synced

    result = run_cli("customers", "list", "--blocked", cwd=folder, env=NARROW)

    assert result.code == 0, result.stderr
    assert _lines_fit(result.stdout)
    printed = result.stdout
    address = printed.index("Incomplete address: 4 customers")
    no_contact = printed.index("No primary billing contact: 4 customers")
    assert address < printed.index("sample:C-1036") < no_contact
    assert no_contact < printed.index("sample:C-1030")
    rows = _rows(printed)
    assert rows["sample:C-1036"][2] == "missing state (required for US)"
    assert rows["sample:C-1030"][2] == "None of the 3 contacts is designated as the billing contact"


def test_customers_show_explains_each_reason_in_a_sentence(synced: tuple[Path, str]) -> None:
    folder, _ = synced
    listed = run_cli("customers", "list", "--blocked", "--json", cwd=folder).json()
    held = next(c for c in listed if c["external_refs"][0]["external_id"] == "C-1036")

    result = run_cli("customers", "show", held["id"], cwd=folder, env=NARROW)

    assert result.code == 0, result.stderr
    assert _lines_fit(result.stdout)
    shown = " ".join(result.stdout.split())
    assert (
        "held because: The billing address is incomplete: missing state (required for US)." in shown
    )
    assert "sample:C-1036" in shown
