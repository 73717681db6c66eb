PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint format bench bench-probe bench-probe-quick bench-quick bench-threadpool bench-stalls bench-deadlock bench-clients bench-servers bench-slo bench-postgres bench-abandon bench-pg report compare clean

install: $(STAMP)

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The test files run in parallel (4 workers, one file each at a time: most of them wait on real
# servers), then the few that assert timings, alone: one after the other took over 10 minutes.
test: $(STAMP)
	@$(BIN)/python -m pytest -n 4 --dist loadfile -m "not timing"; parallel=$$?; \
	$(BIN)/python -m pytest -m timing; alone=$$?; \
	test $$parallel -eq 0 -a $$alone -eq 0

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# One id for both steps, fixed when make starts.
RUN_ID := $(or $(RUN_ID),$(shell date -u +%Y%m%d-%H%M%S))

bench: $(STAMP)
	$(BIN)/python -m loadtests --matrix loadtests/matrices/default.toml --out results/$(RUN_ID)
	$(BIN)/python -m analysis report results/$(RUN_ID)

# The other matrices: `make bench-<name>` runs loadtests/matrices/<name>.toml into
# results/<name>-<run-id>, then its report.
MATRICES := quick threadpool stalls deadlock clients servers slo postgres abandon

$(addprefix bench-,$(MATRICES)): bench-%: $(STAMP)
	$(BIN)/python -m loadtests --matrix loadtests/matrices/$*.toml --out results/$*-$(RUN_ID)
	$(BIN)/python -m analysis report results/$*-$(RUN_ID)

# The probe on the example app (examples/shop.py): every finding, its line and its numbers.
bench-probe: $(STAMP)
	$(BIN)/sync-async-lab probe examples.shop:app --out results/probe-$(RUN_ID)

bench-probe-quick: $(STAMP)
	$(BIN)/sync-async-lab probe examples.shop:app --quick --out results/probe-quick-$(RUN_ID)

# PostgreSQL next to SQLite (loadtests/matrices/postgres.toml): the lab starts its own cluster.
bench-pg: bench-postgres

report: $(STAMP)
	@test -n "$(RUN)" || { echo "usage: make report RUN=results/<run-id>"; exit 2; }
	$(BIN)/python -m analysis report $(RUN)

compare: $(STAMP)
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make compare A=results/<a> B=results/<b>"; exit 2; }
	$(BIN)/python -m analysis compare $(A) $(B)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
