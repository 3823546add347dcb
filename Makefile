# The two commands a newcomer needs:
#   make demo   set up, then run the example study on scikit-learn's digits (a few minutes on a laptop CPU)
#   make test   set up, then run the whole test suite: the pytest suite, then the compose stage
# For the edit-test loop: make test-fast (the unit tests, under a minute: no Ray cluster, no model training, and
# the tests that run on both kinds of registry on SQLite only).
# Both create .venv on first use. torch is installed first and pinned to the CPU build 2.13.0, so no
# multi-GB CUDA wheel is pulled in; pyproject.toml's torch range accepts it. Every other package comes at the
# version constraints.txt names (`make constraints` refreshes that file).
#
# The two stages of `make test`, each on its own:
#   make test-main      the pytest suite (tests/, without tests/compose)
#   make test-compose   README's `docker compose` commands on a real Docker Engine (tests/compose). It starts
#                       an engine of its own when none is running (as root; apt-get installs Debian's
#                       docker.io when dockerd is missing), and skips, saying why, where Docker cannot run.
#                       Images stay cached in /var/cache/hpsearch-compose-test (HPSEARCH_COMPOSE_CACHE).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
PIP_CONSTRAINTS ?= -c constraints.txt

.PHONY: setup constraints demo test test-main test-compose test-fast clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet $(PIP_CONSTRAINTS) -e ".[test]"
	touch $(STAMP)

# constraints.txt anew: the newest versions pyproject.toml's ranges allow, installed in a scratch venv and frozen
# for its Python (scripts/freeze-constraints; torch left out: it is pinned where it is installed).
constraints:
	rm -rf $(VENV)-constraints
	$(MAKE) setup VENV=$(VENV)-constraints PIP_CONSTRAINTS=
	$(VENV)-constraints/bin/python scripts/freeze-constraints $(VENV)-constraints/bin/python
	rm -rf $(VENV)-constraints

demo: $(STAMP)
	$(BIN)/hpsearch submit search_spaces/digits_cnn.yaml

test: test-main test-compose

test-main: $(STAMP)
	$(BIN)/python -m pytest -q --ignore=tests/compose $(PYTEST_ARGS)

test-compose: $(STAMP)
	@start=$$(date +%s); \
	HPSEARCH_COMPOSE_STAGE=1 $(BIN)/python -m pytest -q -rs -s -x tests/compose; status=$$?; \
	echo "compose stage: $$(( $$(date +%s) - start )) s wall time"; \
	exit $$status

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n auto -m "not slow and not e2e and not postgresql" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
