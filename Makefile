# Developer shortcuts; each runs in the active venv (pip install -e '.[test]').
.PHONY: check format test lint types proto

check: lint types  ## everything .ci/run checks before the tests
lint:
	ruff check .
	ruff format --check .
types:
	mypy
format:  ## rewrite the tree in the project's one format
	ruff check --fix .
	ruff format .
test:
	pytest
proto:  ## regenerate hivemind_tui/proto/ from protos/nodepool.proto
	python protos/compile.py
