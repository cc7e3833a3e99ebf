# Set up, run, test:
#
#   make run                                    # the default job: python -m futurelat.main
#   make run ARGS="+experiment=mmnist_vqvae_mamba_large trainer.device=cpu"
#   make test                                   # the test suite, as CI runs it (.ci/run): pytest
#   make test PYTEST_ARGS="tests/test_configs.py -x"
#
# Both create the virtualenv $(VENV) with $(PYTHON) if it is missing and install into it once:
# torch first ($(TORCH): the pinned version resolves to the local CPU build here; an unpinned
# torch pulled in by a dependency fetches the CUDA build), then the package with its dev extra.
# The install is redone only when pyproject.toml changes (stamp file $(VENV)/.installed);
# `make install` does only that step, `make clean-venv` removes the virtualenv.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
ARGS ?=
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
#: What CI exports for the tests: no W&B upload, no Hugging Face downloads (tests/running.py CI_ENV).
TEST_ENV := WANDB_MODE=offline WANDB_SILENT=true HF_HUB_OFFLINE=1

.PHONY: run test install clean-venv

run: $(STAMP)
	$(BIN)/python -m futurelat.main $(ARGS)

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

clean-venv:
	rm -rf $(VENV)
