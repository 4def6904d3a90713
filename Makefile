# Glory-Hole. `make run` and `make test` are the two-command quickstart (README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 5300
DURATION ?= 60

.PHONY: run test lint format bench loadtest migrations-check migrate venv dev-venv clean

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime
dev-venv: $(VENV)/.dev

migrate: venv
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py rundns --host $(HOST) --port $(PORT)

test: dev-venv
	$(PY) -m pytest

lint: dev-venv
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: dev-venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrations-check: dev-venv
	$(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
