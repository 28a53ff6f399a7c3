.PHONY: check test lint types fmt bench

check:          ## lint, types and tests (what CI runs)
	scripts/check

test:
	.venv/bin/pytest

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

types:
	.venv/bin/mypy

fmt:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

bench:
	.venv/bin/python bench/store_upsert.py
