# Every target creates .venv and installs the locked set on first use, so a fresh
# machine needs only python3.11 and make.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= configs/default.yaml

.PHONY: install run test lint format readme lab bench lock clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name customs-targeting --display-name "customs-targeting" >/dev/null
	touch $(STAMP)

install: $(STAMP)

## run: the whole chain on the embedded default (simulated declarations)
run: $(STAMP)
	$(BIN)/targeting run --config $(CONFIG)

## test: lint, type checks and the whole test suite
test: $(STAMP) lint
	$(BIN)/pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests bench tools
	$(BIN)/ruff format --check pipeline tests bench tools
	$(BIN)/mypy
	$(BIN)/python tools/check_notebooks_stripped.py notebooks
	$(BIN)/python tools/readme.py --check
	$(BIN)/python tools/selectivity_doc.py --check

format: $(STAMP)
	$(BIN)/ruff check --fix pipeline tests bench tools
	$(BIN)/ruff format pipeline tests bench tools

## readme: rewrite the README's generated sections (schema, figures) from the code and bench/results/
readme: $(STAMP)
	$(BIN)/python tools/readme.py
	$(BIN)/python tools/selectivity_doc.py

## lab: JupyterLab on notebooks/ with the project's kernel (customs-targeting)
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

## bench: every benchmark (tens of minutes), then the README's figures from their results
bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done
	$(BIN)/python bench/quality.py --config configs/kcs.yaml
	$(BIN)/python bench/backtest.py --rows 200000 --weeks 52 --policies historical rules_only \
	  exploit random_5 random_10 uncertainty_10 --seeds 42 43 44 --out bench/results/backtest_policies.json
	$(BIN)/python tools/readme.py
	$(BIN)/python tools/selectivity_doc.py

## lock: re-resolve requirements.lock from pyproject.toml (needs network)
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra lab --extra scale --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) outputs mlruns mlflow.db .pytest_cache .mypy_cache .ruff_cache
