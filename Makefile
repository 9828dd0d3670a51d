# musicrep: the two commands a newcomer runs (see README.md).
#
#   make main    set everything up, build the built-in corpus, train, evaluate, report
#   make test    set everything up and run the test suite
#
# PROFILE=quick gives a few-minute main job; WORK=DIR moves its outputs.

PYTHON ?= python3
VENV   ?= .venv
WORK   ?= work
PROFILE ?= default
BIN    := $(VENV)/bin

.PHONY: main test setup system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is pinned first from requirements.txt: 2.13.0 is the CPU wheel; a looser
# requirement would pull the CUDA build (several GB).
setup: $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet -e ".[test]"

system-deps:
	sh scripts/system-deps.sh

# The default profile's joint model is the one the package ships (musicrep/models/):
# the main job packages it with its model card, and this copies it into the source.
main: system-deps setup
	$(BIN)/musicrep run --profile $(PROFILE) -o $(WORK)
	@if [ "$(PROFILE)" = default ]; then cp $(WORK)/model/* src/musicrep/models/ && \
		echo "shipped model updated: src/musicrep/models/ (see its MODEL_CARD.md)"; fi

test: system-deps setup
	$(BIN)/python -m pytest -q --durations=15

bench: setup
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_embed.py
	$(BIN)/python benchmarks/bench_search.py

clean:
	rm -rf $(VENV) .pytest_cache build dist src/*.egg-info
