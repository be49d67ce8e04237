# The README's commands. Everything installs into .venv; nothing else is needed but
# Python 3.11+, make and git.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test bench install install-dev lint clean contact-sheet

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "blogimg needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP)

install: $(STAMP)
install-dev: $(DEV_STAMP)

## demo: create .venv, install, and give the example posts their images (offline, no keys)
demo: $(STAMP)
	$(BIN)/blogimg generate examples/posts

## contact-sheet: draw every demo image with the card beside its thumbnail, in one PNG
## (blogimg-data/contact-sheet.png; offline, nothing stored)
contact-sheet: $(STAMP)
	$(BIN)/python -m tools.contact_sheet examples/posts -o blogimg-data/contact-sheet.png

## test: install the dev extras, lint, and run the whole suite (exit code 5, "no tests", fails)
test: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: run every benchmark at full size and write bench/results/*.json and BENCHMARKS.md
## (the imaging benchmark installs sharp with `npm ci` in bench/sharp on first use: Node.js 20+)
bench: $(DEV_STAMP)
	$(BIN)/python -m bench.imaging
	$(BIN)/python -m bench.imaging_bound
	$(BIN)/python -m bench.orchestration
	$(BIN)/python -m bench.database
	$(BIN)/python -m bench.api
	$(BIN)/python -m bench.events
	$(BIN)/python -m bench.report

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/mypy

clean:
	rm -rf $(VENV) blogimg-data .pytest_cache
