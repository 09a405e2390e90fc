# peakplan: every target builds .venv from pyproject.toml when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench bench-check lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/peakplan run scenarios/retail_peak.yaml --out runs/demo --force

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks -q --benchmark-json=benchmarks/results.json

bench-check: $(STAMP)
	$(BIN)/peakplan bench --check benchmarks/baseline.json

lint: $(STAMP)
	$(BIN)/ruff check peakplan tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis .benchmarks
