"""The Salesforce benchmark still runs, at a size that takes seconds (figures not judged),
and what it measures really landed: the sync stored every account and contact.

The module is imported by name at run time: mypy checks ``bench/`` as top-level files,
and a static import would make it see ``bench/sync_salesforce.py`` under two names.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence

import pytest

Main = Callable[[Sequence[str]], int]


@pytest.fixture
def bench_main() -> Main:
    main: Main = importlib.import_module("bench.sync_salesforce").main
    return main


def test_the_salesforce_benchmark_syncs_every_record_it_pages_through_into_the_store(
    bench_main: Main, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench_main(["--accounts", "200", "--contacts", "1000", "--incremental-noop", "--json"])

    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["baseline"]["records"] == report["sync"]["records"] == 1_200
    assert report["baseline"]["requests"] == 1 + 2  # a token, one answer per object
    assert report["sync"]["status"] == "succeeded"
    assert report["sync"]["stored"]["customers"] == 200
    # every contact, once per account it belongs to (every fifth is related to two)
    assert report["sync"]["stored"]["contacts"] == 1_000 + 200
    assert report["same_queries"] is True
    assert report["noop"]["records"] == 0
    assert report["noop"]["requests"] <= 6


def test_the_salesforce_benchmark_prints_its_memory_check(
    bench_main: Main, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench_main(["--accounts", "50", "--contacts", "200", "--memory-check"])

    printed = capsys.readouterr().out
    assert code == 0
    assert "peak memory ratio, 10x the contacts" in printed
    assert "stored after crm-sync sync salesforce --full (2,000 contacts): customers 50" in printed
