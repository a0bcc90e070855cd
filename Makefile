# tuneserve: the two commands are `make run` (set up + serve on embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU extra; `make install EXTRAS=server,gpu,dev` on a CUDA machine (onnxruntime-gpu instead of onnxruntime).
EXTRAS ?= server,cpu,dev
# The environment is locked: `make install` installs within requirements/lock-cpu.txt (lock-gpu.txt when EXTRAS asks
# for gpu), so the two README commands give the same packages on any day. `make lock` after editing pyproject.toml.
LOCK ?= requirements/lock-$(if $(findstring gpu,$(EXTRAS)),gpu,cpu).txt
PYTEST_ARGS ?=
# Test files run this many at a time (pytest-xdist, whole files per worker); 0 = all in this process (to debug).
TEST_WORKERS ?= 2

.PHONY: install run test test-fast lint protos lock lock-diff bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# The lock pins every package (torch among them: a looser requirement can pull a multi-GB CUDA build). It is a
# constraints file: it fixes versions and installs nothing by itself, so each EXTRAS set takes what it needs from it.
install: $(BIN)/python
	$(BIN)/pip install -c $(LOCK) -e ".[$(EXTRAS)]"

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

# The locks, compiled from pyproject.toml (+ constraints-cpu.txt's torch pin) for CPython 3.11 on x86-64 Linux. Versions
# already in a lock are kept unless pyproject.toml rules them out; `make lock UPGRADE=1` resolves everything afresh.
LOCK_COMPILE = $(BIN)/uv pip compile pyproject.toml -c constraints-cpu.txt --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --extra dev --extra kubernetes --extra report --extra server \
	--custom-compile-command "make lock" --quiet $(if $(UPGRADE),--upgrade)
lock: install
	$(LOCK_COMPILE) --extra cpu -o requirements/lock-cpu.txt
	$(LOCK_COMPILE) --extra gpu -o requirements/lock-gpu.txt

# What a fresh resolve would change in the locks (a diff; nothing is written).
lock-diff: install
	@for set in cpu gpu; do \
	  $(LOCK_COMPILE) --upgrade --extra $$set -o $(VENV)/lock-$$set.fresh.txt && \
	  diff -u requirements/lock-$$set.txt $(VENV)/lock-$$set.fresh.txt; \
	done; true

bench:
	$(BIN)/python -m bench.finetune_bbc
	$(BIN)/python -m bench.predict_latency

clean:
	rm -rf $(VENV) data .pytest_cache
