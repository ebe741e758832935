# Two commands: `make run` starts the service on embedded defaults, `make test` passes the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint format bench clean browser-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/ganforge serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The browser tests drive Debian's Chromium (never a downloaded browser); install it when it is missing.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
		|| echo "warning: could not install chromium (apt-get as root); tests/browser will be skipped"

# The tests run in TEST_WORKERS processes (pytest-xdist), a test file to a process: most tests hold one core (one
# torch thread, or a request waiting on the service's processes), so two use both of a 2-core machine. Each process
# claims a Redis db and a PostgreSQL database of its own (tests/conftest.py); TEST_WORKERS=0 runs them in this one.
TEST_WORKERS ?= 2

test: lint browser-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
