"""Rows removed from an export, as a user sees them through the CLI."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import run_cli


def _without(path: Path, *external_ids: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text(
        "".join(line for line in lines if line.split(",", 1)[0] not in external_ids),
        encoding="utf-8",
    )


def _held_as_deleted(project: Path, external_id: str) -> bool:
    shown = run_cli("customers", "show", external_id, "--json", cwd=project)
    assert shown.code == 0, shown.stderr
    return "source_deleted" in [r["code"] for r in shown.json()["blocked_reasons"]]


def test_a_row_removed_from_the_export_is_held_as_deleted_after_a_full_sync(
    project: Path,
) -> None:
    assert run_cli("sync", cwd=project).code == 0
    _without(project / "examples" / "companies.csv", "C-1003")

    result = run_cli("sync", "--full", "--json", cwd=project)

    assert result.code == 0, result.stderr
    assert _held_as_deleted(project, "C-1003")
    assert not _held_as_deleted(project, "C-1004")


def test_an_empty_export_is_refused_unless_forced(project: Path) -> None:
    assert run_cli("sync", cwd=project).code == 0
    companies = project / "examples" / "companies.csv"
    companies.write_text(companies.read_text(encoding="utf-8").splitlines()[0] + "\n")

    refused = run_cli("sync", "--full", "--json", cwd=project)

    assert refused.code == 1
    assert "--force-deletions" in refused.json()["runs"][0]["error"]
    assert not _held_as_deleted(project, "C-1003")
    forced = run_cli("sync", "--full", "--force-deletions", cwd=project)
    assert forced.code == 0, forced.stderr
    assert _held_as_deleted(project, "C-1003")
