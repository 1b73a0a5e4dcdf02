# Two entry points (README): `make demo` and `make test`. Both build .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch==2.13.0 in the same command as everything else (STACK.md pitfall 1)
	$(BIN)/pip install torch==2.13.0 -e '.[test,faiss]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cerbero-hf demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
