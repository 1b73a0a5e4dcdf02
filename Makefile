# Two entry points (README): `make demo` and `make test`. Both build .venv on a fresh machine.
# `make lowest` proves pyproject.toml's lower bounds (a fresh venv at requirements/lowest.txt + the unit tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The exact tested set (pip constraints); torch==2.13.0 is named in the same command
# (without the exact pin pip may pull a multi-GB CUDA build).
LOCK := requirements/lock.txt
LOWEST := requirements/lowest.txt
LOWEST_VENV := build/venv-lowest
# The lower-bound run: the unit tests of the shared base, seeds, refine, quality, train and the recipe
# (the whole-pipeline demo included); not the packaging test, which builds its own venv.
LOWEST_TESTS ?= $(filter-out tests/test_packaging.py,$(wildcard tests/test_*.py)) tests/stages/seeds \
	tests/stages/refine tests/stages/quality tests/stages/train

.PHONY: demo test check install clean bench lowest docs

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -c $(LOCK) torch==2.13.0 -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cerbero-hf demo

# The whole suite in two worker processes (CONTRIBUTING.md); the 15 slowest tests are listed at the end.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy cerbero_hf
	$(MAKE) --no-print-directory docs
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=15

# The site (build/site, mkdocs.yml): docs/ as the guides, README.md as the home page and the API reference rendered
# from the docstrings. --strict: a broken link, anchor or cross-reference, a docstring that does not parse, or a
# public name without a docstring fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d build/site

# The edit-test loop: ruff, mypy and the fast tests (no servers, Ray, training runs or end-to-end paths).
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy cerbero_hf
	$(BIN)/python -m pytest -q -n 2 -m "not slow and not network_local" --durations=5

lowest:
	rm -rf $(LOWEST_VENV)
	$(PY) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/pip install -q --upgrade pip
	$(LOWEST_VENV)/bin/pip install -c $(LOWEST) torch==2.13.0 -e '.[test]'
	$(LOWEST_VENV)/bin/python requirements/check_installed.py $(LOWEST)
	$(LOWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider $(LOWEST_TESTS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache build *.egg-info
