"""Listing customers page by page, as a script that reads a large store would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    from tests.e2e.conftest import ROOT

    project = tmp_path_factory.mktemp("listing")
    shutil.copy(ROOT / "config.example.yaml", project / "crm-sync.yaml")
    shutil.copytree(ROOT / "examples", project / "examples")
    assert run_cli("sync", cwd=project).code == 0
    return project


def test_jsonl_prints_one_customer_per_line_and_json_the_same_as_an_array(synced: Path) -> None:
    lines = run_cli("customers", "list", "--jsonl", cwd=synced).stdout.splitlines()
    array = run_cli("customers", "list", "--json", cwd=synced).json()

    assert len(lines) == 49
    assert [json.loads(text) for text in lines] == array


def test_limit_and_after_page_through_the_customers_in_id_order(synced: Path) -> None:
    everyone = [c["id"] for c in run_cli("customers", "list", "--json", cwd=synced).json()]

    first = run_cli("customers", "list", "--json", "--limit", "20", cwd=synced).json()
    rest = run_cli("customers", "list", "--json", "--after", first[-1]["id"], cwd=synced).json()

    assert everyone == sorted(everyone)
    assert [c["id"] for c in first + rest] == everyone


def test_ready_lists_only_customers_ready_to_bill(synced: Path) -> None:
    ready = run_cli("customers", "list", "--ready", "--jsonl", cwd=synced).stdout.splitlines()

    assert len(ready) == 36
    assert all(json.loads(text)["ready"] for text in ready)


def test_ready_and_blocked_together_are_a_usage_error(synced: Path) -> None:
    assert run_cli("customers", "list", "--ready", "--blocked", cwd=synced).code == 2


def test_an_empty_page_is_an_empty_array(synced: Path) -> None:
    last = run_cli("customers", "list", "--json", cwd=synced).json()[-1]["id"]

    assert run_cli("customers", "list", "--json", "--after", last, cwd=synced).json() == []


def test_history_shows_what_changed_newest_first_with_why(tmp_path: Path) -> None:
    import shutil

    from tests.e2e.conftest import ROOT

    shutil.copy(ROOT / "config.example.yaml", tmp_path / "crm-sync.yaml")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    assert run_cli("sync", cwd=tmp_path).code == 0
    customer = run_cli("customers", "show", "C-1031", "--json", cwd=tmp_path).json()
    contact = customer["contacts"][0]
    assert run_cli("contacts", "set-primary", "C-1031", contact["id"], cwd=tmp_path).code == 0

    history = run_cli("customers", "history", "C-1031", "--json", cwd=tmp_path).json()
    printed = run_cli("customers", "history", "C-1031", cwd=tmp_path).stdout

    assert history[0]["cause"] == "command: contacts set-primary"
    assert history[0]["version"] == history[1]["version"] + 1
    assert history[-1]["cause"].startswith("sync run")
    assert "command: contacts set-primary" in printed
