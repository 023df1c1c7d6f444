# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHROMIUM := /usr/bin/chromium

.PHONY: run test test-fast bench checkpoints chromium clean

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

test: $(VENV)/.installed-dev chromium
	$(PY) -m pytest -q

test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest -q -m "not browser and not slow"

bench: $(VENV)/.installed-dev
	$(PY) -m benchmarks

checkpoints: $(VENV)/.installed
	bash checkpoints/train_all.sh

clean:
	rm -rf $(VENV) .pytest_cache
