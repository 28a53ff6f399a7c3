"""The Pipedrive benchmark still runs, at a size that takes seconds (figures not judged),
and the records it syncs land in the store.

The module is imported by name at run time: mypy checks ``bench/`` as top-level files,
and a static import would make it see ``bench/sync_pipedrive.py`` under two names.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence

import pytest

Main = Callable[[Sequence[str]], int]


@pytest.fixture
def bench_main() -> Main:
    main: Main = importlib.import_module("bench.sync_pipedrive").main
    return main


def test_the_pipedrive_benchmark_syncs_every_record_into_the_store_next_to_the_baseline(
    bench_main: Main, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench_main(
        ["--organizations", "120", "--persons", "700", "--incremental-noop", "--json"]
    )

    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["baseline"]["records"] == report["sync"]["records"] == 820
    assert report["baseline"]["requests"] == 1 + 2  # limit 500: organizations 1 page, persons 2
    assert report["sync"]["status"] == "succeeded"
    assert report["sync"]["stored"] == {"customers": 120, "contacts": 700}
    assert report["sync"]["requests"] <= report["baseline"]["requests"] + 2  # the fields
    assert report["noop"]["records"] == 0
    assert report["noop"]["requests"] <= 4
    assert report["noop"]["stored"] == {"customers": 120, "contacts": 700}
    assert {t["name"] for t in report["targets"]} >= {
        "sync requests / baseline requests",
        "requests of an incremental run with nothing changed",
    }
