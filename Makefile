# Everything runs inside .venv, created on first use from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= runs/demo

.PHONY: install demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

# Main job. For now: partition a generated (synthetic) coordinate sample and print its summary.
demo: install
	$(BIN)/geoloc-train sample-coords --n 200000 --out $(OUT)/coords.csv
	$(BIN)/geoloc-train partition --coords $(OUT)/coords.csv --tau-max 500 --tau-min 20 --out $(OUT)/cells.csv

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/partition.py

clean:
	rm -rf $(VENV) runs
