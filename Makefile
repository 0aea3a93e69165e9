# The two commands a person needs: `make chat` and `make test`. Both set up what is missing
# (a .venv with the project installed, the default models pulled) and skip what is done.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MODELS_STAMP := $(VENV)/.models-pulled

.PHONY: chat test setup models bench lint format screenshots clean

chat: models
	$(VENV)/bin/chatapp

test: models
	$(PY) -m pytest -q

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: the CPU wheel of exactly this version, never a CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# `chatapp models pull --defaults` skips models already pulled and verified.
models: $(STAMP)
	$(PY) -m chatapp models pull --defaults

bench: models
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/decode.py

lint: $(STAMP)
	$(VENV)/bin/ruff check chatapp tests bench
	$(VENV)/bin/ruff format --check chatapp tests bench

format: $(STAMP)
	$(VENV)/bin/ruff format chatapp tests bench
	$(VENV)/bin/ruff check --fix chatapp tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Regenerate the README's theme screenshots (themes/screenshots/*.svg) from the real app.
screenshots: $(STAMP)
	$(PY) -m tests.screenshots
