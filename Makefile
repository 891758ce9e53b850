# moths-framework: `make demo` shows the whole flow on test_data, `make test` runs the tests,
# `make docs` builds the documentation site into site/. All create .venv when missing and
# install the core (with the docs tools) and every plugin under plugins/.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*)
STAMP := $(VENV)/.installed
# CI (CI=true) also runs the tests marked slow; those marked gpu only run with `pytest -m gpu`.
PYTEST_MARK := $(if $(CI),-m "not gpu",)
DEMO := demo_out

.PHONY: install demo test lint docs dist clean

install: $(STAMP)

$(STAMP): pyproject.toml $(foreach p,$(PLUGINS),$(p)/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[all,dev,docs]' $(foreach p,$(PLUGINS),-e $(p))
	touch $@

# The layer contracts in pyproject.toml ([tool.importlinter]) first, then the tests.
test: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest $(PYTEST_MARK)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

demo: install
	@bash scripts/demo.sh $(BIN) $(DEMO)

# The site from mkdocs.yml and docs/; --strict: a broken link or a page missing from the nav fails.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Wheels and sdists of the core and of every plugin, into dist/ (isolated PEP 517 builds).
dist: install
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	for p in $(PLUGINS); do $(BIN)/python -m build --outdir dist $$p || exit 1; done

clean:
	rm -rf $(DEMO) runs site .pytest_cache
