# Every target creates .venv and installs the locked set on first use, so a fresh
# machine needs only make and one of python3.11, python3.12 or python3.13 (the first found).
# (the first that runs: a pyenv shim without that version installed is passed over)
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13; do $$p -c '' 2>/dev/null && { echo $$p; break; }; done)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= configs/default.yaml

.PHONY: install install-serve serve ui dashboard run test lint format readme lab bench lock clean

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "make: no python3.11, python3.12 or python3.13 on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name customs-targeting --display-name "customs-targeting" >/dev/null
	touch $(STAMP)

## install: the development set (every extra: train, serve, reference learners, dev, lab, scale)
install: $(STAMP)

## install-serve: what a deployment needs to serve the registered scorer, in .venv-serve (~1.2 GB,
## most of it xgboost and the NCCL library its Linux wheels require)
install-serve:
	@test -n "$(PYTHON)" || { echo "make: no python3.11, python3.12 or python3.13 on PATH" >&2; exit 1; }
	$(PYTHON) -m venv .venv-serve
	.venv-serve/bin/pip install --quiet --disable-pip-version-check uv==0.13.9
	.venv-serve/bin/uv pip install --quiet --python .venv-serve/bin/python -r requirements-serve.lock
	.venv-serve/bin/uv pip install --quiet --python .venv-serve/bin/python --no-deps .

## run: the whole chain on the embedded default (simulated declarations)
run: $(STAMP)
	$(BIN)/targeting run --config $(CONFIG)

## serve: the approved scorer of CONFIG (registry alias champion of customs-targeting-<name>;
## MODEL=... for another) over REST on PORT
MODEL ?= models:/customs-targeting-$(basename $(notdir $(CONFIG)))@champion
PORT  ?= 5001
serve: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db} \
	  $(BIN)/mlflow models serve -m $(MODEL) --env-manager local -h 127.0.0.1 -p $(PORT)

## ui: the MLflow UI on the store that `run` and `serve` use (MLFLOW_TRACKING_URI, else ./mlflow.db)
## on 127.0.0.1:UI_PORT; one worker and no job executor (MLflow's defaults, 4 workers and 7 job
## consumers, took 85 s to answer on 2 loaded cores; this, 23 s)
UI_PORT ?= 5000
ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
	  $(BIN)/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db} \
	  --host 127.0.0.1 --port $(UI_PORT) --workers 1

## test: lint, type checks and the whole test suite
# --dist loadscope: every test of a module runs on one worker, so a module's shared fixture (a
# whole-chain run, a tracking server) is built once, not once per worker.
test: $(STAMP) lint
	$(BIN)/pytest -n 2 --dist loadscope

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

## lab: JupyterLab at the project root (notebooks/, outputs/ and the report all in its file
## browser) with the project's kernel (customs-targeting); each notebook runs in its own folder
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root,)

## dashboard: optuna-dashboard on the study of CONFIG, on 127.0.0.1:DASHBOARD_PORT (8080)
DASHBOARD_PORT ?= 8080
STUDY = $(BIN)/python -c 'from pipeline.config import config_path, load; \
  from pipeline.train.tune import storage_url; print(storage_url(load(config_path("$(CONFIG)"))))'
dashboard: $(STAMP)
	$(BIN)/optuna-dashboard "$$($(STUDY))" --host 127.0.0.1 --port $(DASHBOARD_PORT)

## bench: every benchmark (tens of minutes), then the README's figures from their results
bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done
	$(BIN)/python bench/quality.py --config configs/kcs.yaml
	$(BIN)/python bench/quality.py --config configs/default.yaml --set simulate.rows=60000 \
	  --set tune.n_trials=0 --seeds 42 43 44
	$(BIN)/python bench/backtest.py --rows 200000 --weeks 52 --policies historical rules_only \
	  exploit random_5 random_10 uncertainty_10 --seeds 42 43 44 --out bench/results/backtest_policies.json
	$(BIN)/python tools/readme.py
	$(BIN)/python tools/selectivity_doc.py

## lock: re-resolve both locks from pyproject.toml (needs network); one universal resolution each,
## valid on Python 3.11, 3.12 and 3.13 (markers where a package differs)
LOCK := $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11
lock:
	$(LOCK) --extra dev --extra lab --extra scale -o requirements.lock
	$(LOCK) --extra serve -o requirements-serve.lock

clean:
	rm -rf $(VENV) .venv-serve outputs mlruns mlflow.db .pytest_cache .mypy_cache .ruff_cache
