# Two commands: `make demo` and `make test`. Both set up .venv from nothing first.
VENV   := .venv
STAMP  := $(VENV)/.installed
UV     := $(shell command -v uv 2>/dev/null)

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml uv.lock
ifeq ($(UV),)
	python3 -m pip install --quiet uv
endif
	uv sync --frozen --all-extras --compile-bytecode
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/lineage-guard demo

test: setup
	$(VENV)/bin/pytest

bench: setup
	$(VENV)/bin/python benchmarks/masking.py
	$(VENV)/bin/python benchmarks/detection.py
	$(VENV)/bin/python benchmarks/lineage_overhead.py
	$(VENV)/bin/python benchmarks/extract_memory.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
