# The two commands a newcomer needs:
#   make demo   set up, then run the example study on scikit-learn's digits (a few minutes on a laptop CPU)
#   make test   set up, then run the whole test suite
# For the edit-test loop: make test-fast (the unit tests, under a minute; no Ray cluster, no model training).
# Both create .venv on first use. torch is installed first and pinned to the CPU build 2.13.0, so no
# multi-GB CUDA wheel is pulled in; pyproject.toml's torch range accepts it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hpsearch submit search_spaces/digits_cnn.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not e2e" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
