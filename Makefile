# odeflow — set-up, tests and the demo. Everything runs inside .venv/ (created here).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch that this machine keeps on disk; override with TORCH_SPEC=torch to
# let pip choose (e.g. a CUDA build on a GPU machine).
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.odeflow-installed

.PHONY: venv test lint docs demo clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)" || $(BIN)/pip install --quiet "torch<=2.14.1"
	$(BIN)/pip install --quiet -e ".[dev,docs,flux]"
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .

docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

test: venv
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(BIN)/python -m pytest -n auto -q
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

demo: venv
	MPLBACKEND=Agg $(BIN)/odeflow study convergence --quick
	MPLBACKEND=Agg $(BIN)/odeflow study straightness --quick

clean:
	rm -rf $(VENV) site results .pytest_cache .ruff_cache .hypothesis
