# Everything runs inside .venv, created on first use from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= $(or $(GEOLOC_OUT),runs/demo)
# The demo's dataset: $(GEOLOC_DATA) (a manifest CSV or a folder of EXIF-GPS photos), else a SYNTHETIC world,
# rendered once into $(WORLD) (deterministic; kept outside the run folder because the store refers to its photos).
WORLD ?= runs/synthetic-world
DATA := $(or $(GEOLOC_DATA),$(WORLD)/manifest.csv)
LABEL := $(if $(GEOLOC_DATA),$(GEOLOC_DATA),SYNTHETIC demo world (rendered photos, not real))
ARCH ?= tf_efficientnet_lite0
SIZE ?= $(if $(GEOLOC_DATA),300,224)
# Each run is built in $(OUT).partial and swapped into $(OUT) only once complete: a failed run never
# touches the previous one.
STAGE := $(OUT).partial
STORE := edge:$(STAGE)/store

.PHONY: install demo test bench clean

# The web page's scripts, styles and basemap come from the npm registry at install time (never from a CDN).
WEB := locator/service/web

$(BIN)/.installed: pyproject.toml $(WEB)/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	npm ci --prefix $(WEB) --no-audit --no-fund --silent
	touch $@

install: $(BIN)/.installed

# Main job: the whole pipeline on $(DATA); the result goes to $(OUT).
demo: install
	$(BIN)/geoloc-train run-start --out $(OUT) $(if $(GEOLOC_DATA),--data $(GEOLOC_DATA))
	$(if $(GEOLOC_DATA),,$(BIN)/geoloc-train demo-world --out $(WORLD))
	$(BIN)/geoloc-train split --data $(DATA) --out $(STAGE)/split
	$(BIN)/geoloc-train hierarchy --data $(STAGE)/split/train.csv --out $(STAGE)/cells
	$(BIN)/geoloc-train bundle --out $(STAGE)/bundle --arch $(ARCH) --size $(SIZE) \
		--partitions $(STAGE)/cells/coarse.csv $(STAGE)/cells/middle.csv $(STAGE)/cells/fine.csv
	$(BIN)/geoloc-train features --bundle $(STAGE)/bundle --data $(STAGE)/split/train.csv --out $(STAGE)/features/train
	$(BIN)/geoloc-train head --bundle $(STAGE)/bundle --features $(STAGE)/features/train --kind ce --default
	$(BIN)/geoloc-train head --bundle $(STAGE)/bundle --features $(STAGE)/features/train --kind hc
	$(BIN)/geoloc-train head --bundle $(STAGE)/bundle --features $(STAGE)/features/train --kind mvmf
	$(BIN)/geoloc-train rrm --bundle $(STAGE)/bundle --features $(STAGE)/features/train
	$(BIN)/geoloc-train fusion --bundle $(STAGE)/bundle --features $(STAGE)/features/train
	$(BIN)/geoloc-train placeable --bundle $(STAGE)/bundle --features $(STAGE)/features/train --out $(STAGE)/placeable.csv
	$(BIN)/geoloc-ingest --bundle $(STAGE)/bundle --store $(STORE) --data $(STAGE)/placeable.csv
	$(BIN)/geoloc evaluate --bundle $(STAGE)/bundle --store $(STORE) --benchmark $(STAGE)/split/val.csv \
		--raw-features $(STAGE)/features/train --markdown $(STAGE)/eval.md \
		--title "# Held-out evaluation — $(LABEL)"
	$(BIN)/geoloc locate $(STAGE)/split/val.csv --bundle $(STAGE)/bundle --store $(STORE) \
		--out $(STAGE)/predictions.csv --map $(STAGE)/map.html --title "geoloc — $(LABEL)"
	$(BIN)/geoloc-train run-publish --out $(OUT) --description "make demo on $(LABEL)"
	@echo "demo: done — $(LABEL). See $(OUT)/eval.md, $(OUT)/predictions.csv, $(OUT)/map.html"

test: install
	$(BIN)/ruff check --quiet
	$(BIN)/python -m pytest -q

# The benchmarks that need nothing but ../shared; locate.py, serve.py and growth.py take an im2gps2k demo run.
bench: install
	$(BIN)/python benchmarks/partition.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/draft_decode.py
	$(BIN)/python benchmarks/ingest_scale.py
	$(BIN)/python benchmarks/train_scale.py
	$(BIN)/python benchmarks/fusion_scale.py

clean:
	rm -rf $(VENV) runs
