# Two commands: `make demo` and `make test`. Both set up .venv from nothing first.
VENV   := .venv
STAMP  := $(VENV)/.installed
# uv from PATH, else the one pip installs (run as a module: no PATH or shim needed).
UV     := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

.PHONY: setup demo test bench clean constraints docs

$(STAMP): pyproject.toml uv.lock lineage_guard/mask/_hmac_sha256.c
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --all-extras --compile-bytecode
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/lineage-guard demo

test: setup
	$(VENV)/bin/pytest

# constraints.txt: the exact versions of uv.lock for plain pip (`pip install ... -c constraints.txt`).
# Run after every `uv lock`; tests/test_pip_install.py fails while it is stale.
constraints: uv.lock
	$(UV) export --frozen --all-extras --no-hashes --no-emit-project --quiet -o constraints.txt

# docs/policy-reference.md is generated from the pydantic policy model; tests fail while it is stale.
docs: setup
	$(VENV)/bin/python -m lineage_guard.policy.reference --output docs/policy-reference.md

# Benchmarks are measurements, not tests. Those that need a server read BENCH_PG.
BENCH_PG ?= postgresql://postgres@127.0.0.1:5432/postgres
bench: setup
	$(VENV)/bin/python benchmarks/masking.py
	$(VENV)/bin/python benchmarks/detection.py
	$(VENV)/bin/python benchmarks/sql_analyze.py
	$(VENV)/bin/python benchmarks/lineage_overhead.py
	$(VENV)/bin/python benchmarks/audit_ledger.py --postgres $(BENCH_PG)
	$(VENV)/bin/python benchmarks/extract_memory.py --url $(BENCH_PG)
	$(VENV)/bin/python benchmarks/row_filter_pushdown.py --url $(BENCH_PG)
	$(VENV)/bin/python benchmarks/plan_cost.py --url $(BENCH_PG)
	$(VENV)/bin/python benchmarks/airflow_operator.py $(BENCH_PG)
	$(VENV)/bin/python benchmarks/dagster_assets.py $(BENCH_PG)

clean:
	rm -rf $(VENV) demo-out .pytest_cache
