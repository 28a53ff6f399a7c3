"""The listing benchmark still runs at a size that takes seconds, and every customer it
filled the store with comes out of `customers list --jsonl` (figures not judged)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import pytest

Main = Callable[[Sequence[str]], int]


def test_the_listing_benchmark_lists_every_customer_it_stored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main: Main = importlib.import_module("bench.customers_list").main

    code = main(["--customers", "300"])  # exits if --jsonl lists another number

    printed = capsys.readouterr().out
    assert code == 0
    rows = [line.split() for line in printed.splitlines() if line.lstrip().startswith("300 ")]
    assert [row[1] for row in rows] == ["json", "jsonl"]
