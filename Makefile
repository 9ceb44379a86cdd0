# Everything runs inside .venv, created on first use from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= $(or $(GEOLOC_OUT),runs/demo)
# The demo's dataset: $(GEOLOC_DATA) (a manifest CSV or a folder of EXIF-GPS photos), else a SYNTHETIC world.
DATA := $(or $(GEOLOC_DATA),$(OUT)/world/manifest.csv)
LABEL := $(if $(GEOLOC_DATA),$(GEOLOC_DATA),SYNTHETIC demo world (rendered photos, not real))
ARCH ?= tf_efficientnet_lite0
SIZE ?= $(if $(GEOLOC_DATA),300,224)
STORE := edge:$(OUT)/store

.PHONY: install demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

# Main job: the whole pipeline on $(DATA); everything goes under $(OUT).
demo: install
	rm -rf $(OUT)/store $(OUT)/store.rejects.csv $(OUT)/bundle $(OUT)/features
	$(if $(GEOLOC_DATA),,$(BIN)/geoloc-train demo-world --out $(OUT)/world)
	$(BIN)/geoloc-train split --data $(DATA) --out $(OUT)/split
	$(BIN)/geoloc-train hierarchy --data $(OUT)/split/train.csv --out $(OUT)/cells
	$(BIN)/geoloc-train bundle --out $(OUT)/bundle --arch $(ARCH) --size $(SIZE) \
		--partitions $(OUT)/cells/coarse.csv $(OUT)/cells/middle.csv $(OUT)/cells/fine.csv
	$(BIN)/geoloc-train features --bundle $(OUT)/bundle --data $(OUT)/split/train.csv --out $(OUT)/features/train
	$(BIN)/geoloc-train head --bundle $(OUT)/bundle --features $(OUT)/features/train --kind ce --default
	$(BIN)/geoloc-train head --bundle $(OUT)/bundle --features $(OUT)/features/train --kind hc
	$(BIN)/geoloc-train head --bundle $(OUT)/bundle --features $(OUT)/features/train --kind mvmf
	$(BIN)/geoloc-train rrm --bundle $(OUT)/bundle --features $(OUT)/features/train
	$(BIN)/geoloc-train placeable --bundle $(OUT)/bundle --features $(OUT)/features/train --out $(OUT)/placeable.csv
	$(BIN)/geoloc-ingest --bundle $(OUT)/bundle --store $(STORE) --data $(OUT)/placeable.csv
	$(BIN)/geoloc evaluate --bundle $(OUT)/bundle --store $(STORE) --benchmark $(OUT)/split/val.csv \
		--raw-features $(OUT)/features/train --markdown $(OUT)/eval.md \
		--title "# Held-out evaluation — $(LABEL)"
	$(BIN)/geoloc locate $(OUT)/split/val.csv --bundle $(OUT)/bundle --store $(STORE) \
		--out $(OUT)/predictions.csv --map $(OUT)/map.html --title "geoloc — $(LABEL)"
	@echo "demo: done — $(LABEL). See $(OUT)/eval.md, $(OUT)/predictions.csv, $(OUT)/map.html"

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/partition.py
	$(BIN)/python benchmarks/features.py

clean:
	rm -rf $(VENV) runs
