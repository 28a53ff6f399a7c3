"""The store benchmark still runs, at a size that takes seconds (figures not judged).

The module is imported by name at run time: mypy checks ``bench/`` as top-level files,
and a static import would make it see ``bench/store_upsert.py`` under two names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import pytest

Main = Callable[[Sequence[str]], int]


@pytest.fixture
def bench_main() -> Main:
    main: Main = importlib.import_module("bench.store_upsert").main
    return main


def test_the_store_benchmark_upserts_twice_and_prints_its_table(
    bench_main: Main, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench_main(["--backend", "sqlite", "--customers", "300", "--page-size", "200"])

    printed = capsys.readouterr().out
    assert code == 0
    assert "first rec/s" in printed
    assert "unchanged rec/s" in printed
    assert "peak RSS MiB" in printed
    row = next(line for line in printed.splitlines() if line.startswith("sqlite "))
    assert row.split()[1:3] == ["300", "1,200"]  # customers, records (with 3 contacts each)
