"""The HubSpot benchmark still runs, at a size that takes seconds (figures not judged).

The module is imported by name at run time: mypy checks ``bench/`` as top-level files,
and a static import would make it see ``bench/sync_hubspot.py`` under two names.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence

import pytest

Main = Callable[[Sequence[str]], int]


@pytest.fixture
def bench_main() -> Main:
    main: Main = importlib.import_module("bench.sync_hubspot").main
    return main


def test_the_hubspot_benchmark_measures_the_baseline_the_sync_and_the_noop_run(
    bench_main: Main, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench_main(["--companies", "200", "--contacts", "1000", "--incremental-noop", "--json"])

    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["baseline"]["records"] == report["sync"]["records"] == 1_200
    assert report["baseline"]["requests"] == 2 + 10
    assert report["sync"]["status"] == "succeeded"
    assert report["sync"]["peak_rss_bytes"] > 0
    assert report["same_queries"] is True
    assert report["noop"]["requests"] <= 4
    assert {t["name"] for t in report["targets"]} >= {
        "sync requests / baseline requests",
        "requests of an incremental run with nothing changed",
    }


def test_the_hubspot_benchmark_prints_its_memory_check_and_rate_limited_run(
    bench_main: Main, capsys: pytest.CaptureFixture[str]
) -> None:
    memory = bench_main(["--companies", "50", "--contacts", "200", "--memory-check"])
    limited = bench_main(["--companies", "50", "--contacts", "300", "--rate-limit", "40/1"])

    printed = capsys.readouterr().out
    assert (memory, limited) == (0, 0)
    assert "peak memory ratio, 10x the contacts" in printed
    assert "the limit's bound" in printed
    assert "429 answers under the rate limit" in printed
