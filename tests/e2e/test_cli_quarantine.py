"""A person clears quarantine entries by hand with ``crm-sync quarantine clear``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli

pytestmark = pytest.mark.slow


def _entries(project: Path) -> list[tuple[str, str | None]]:
    listed = run_cli("quarantine", "--json", cwd=project)
    assert listed.code == 0, listed.stderr
    return sorted((e["object_type"], e["external_id"]) for e in listed.json())


def test_clearing_an_entry_by_its_external_id_removes_only_that_entry(project: Path) -> None:
    run_cli("sync", cwd=project)

    result = run_cli("quarantine", "clear", "C-1042", cwd=project)

    assert result.code == 0, result.stderr
    assert "cleared 1 quarantine entry" in result.stdout
    assert _entries(project) == [("contact", None)]


def test_clearing_every_entry_of_a_connector_reports_the_count_as_json(project: Path) -> None:
    run_cli("sync", cwd=project)

    result = run_cli("quarantine", "clear", "--connector", "sample", "--json", cwd=project)

    assert result.code == 0, result.stderr
    assert result.json() == {"cleared": 2}
    assert _entries(project) == []


def test_clear_without_saying_what_to_clear_is_a_usage_error_and_clears_nothing(
    project: Path,
) -> None:
    run_cli("sync", cwd=project)

    result = run_cli("quarantine", "clear", cwd=project)

    assert result.code == 2
    assert "--all" in result.stderr
    assert len(_entries(project)) == 2


def test_clear_all_empties_the_quarantine(project: Path) -> None:
    run_cli("sync", cwd=project)

    result = run_cli("quarantine", "clear", "--all", cwd=project)

    assert result.code == 0, result.stderr
    assert _entries(project) == []
