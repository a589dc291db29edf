# `make demo` and `make test` each set up .venv from requirements.txt first (offline-capable here).
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared
DATA ?=
PYTEST_ARGS ?=

.PHONY: venv test lint format demo bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

test: venv
	CODEDRESNEXT_SHARED=$(SHARED) $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

demo: venv
	CODEDRESNEXT_SHARED=$(SHARED) $(PY) -m codedresnext.demo --shared $(SHARED) $(if $(DATA),--data $(DATA))

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
