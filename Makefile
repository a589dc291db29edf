# `make demo` and `make test` each set up .venv first: the package with its dependencies from
# pyproject.toml ([train,dev,serve] extras), at the tested versions in requirements.txt (constraints).
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared
DATA ?=
PYTEST_ARGS ?=
# the Triton server binary for `codedresnext serve` and its tests (--no-deps: its numpy<2 pin is not needed)
PYTRITON ?= nvidia-pytriton==0.7.0

.PHONY: venv test lint format demo bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.txt -e ".[train,dev,serve]"
	$(PY) -m pip install -q --no-deps $(PYTRITON)
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
