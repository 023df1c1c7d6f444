# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHROMIUM := /usr/bin/chromium

.PHONY: run lint format test test-fast bench checkpoints chromium clean

# The venv is rebuilt when the requirements change; torch/torchvision are pinned to on-disk wheels.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Debian's Chromium for the browser tests (Playwright's own browser download does not work offline).
chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }

run: $(VENV)/.installed
	$(PY) app.py

# ruff's rules and format settings are in pyproject.toml; `make test` lints first, so CI fails on a lint error.
lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .

format: $(VENV)/.installed-dev
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: lint chromium
	$(PY) -m pytest -q

test-fast: lint
	$(PY) -m pytest -q -m "not browser and not slow"

bench: $(VENV)/.installed-dev
	$(PY) -m benchmarks

checkpoints: $(VENV)/.installed
	bash checkpoints/train_all.sh

clean:
	rm -rf $(VENV) .pytest_cache
