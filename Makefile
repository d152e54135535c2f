# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= $(if $(wildcard gatewayz.yaml),gatewayz.yaml,config/example.yaml)

.PHONY: serve test lint install dev bench clean

$(BIN)/gatewayz: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/gatewayz

serve: install
	$(BIN)/gatewayz serve --config $(CONFIG)

lint: install
	$(BIN)/ruff check gatewayz tests
	$(BIN)/mypy gatewayz

test: install lint
	$(BIN)/pytest -q -p no:cacheprovider -n 4 --dist loadfile tests

bench: install
	$(BIN)/python bench/run_bench.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
