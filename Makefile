# tuneserve: the two commands are `make run` (set up + serve on embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU extra; `make install EXTRAS=server,gpu,dev` on a CUDA machine (onnxruntime-gpu instead of onnxruntime).
EXTRAS ?= server,cpu,dev
PYTEST_ARGS ?=
# Test files run this many at a time (pytest-xdist, whole files per worker); 0 = all in this process (to debug).
TEST_WORKERS ?= 2

.PHONY: install run test test-fast lint protos bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# constraints-cpu.txt pins torch to the CPU wheel; a looser requirement can pull a multi-GB CUDA build.
install: $(BIN)/python
	$(BIN)/pip install -c constraints-cpu.txt -e ".[$(EXTRAS)]"

run: install
	$(BIN)/tuneserve serve

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check client service tests bench tools
	$(BIN)/mypy

protos:
	$(BIN)/python tools/gen_protos.py

bench:
	$(BIN)/python bench/finetune_bbc.py
	$(BIN)/python bench/predict_latency.py

clean:
	rm -rf $(VENV) data .pytest_cache
