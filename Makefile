# The two commands of the README. Each creates .venv once (again only when pyproject.toml changes).
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: quickstart test lint

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

quickstart: $(VENV)/.installed
	$(VENV)/bin/spatialtune quickstart --output-dir runs/quickstart

# DeepSpeed for the tests that export ZeRO-3 checkpoints: built against the venv's torch (its sdist would fetch another
# into an isolated build), its C++ ops left unbuilt (none is needed on CPU)
$(VENV)/.deepspeed: $(VENV)/.installed
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet --no-build-isolation "deepspeed>=0.18,<0.20"
	touch $@

test: $(VENV)/.deepspeed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests scripts benchmarks
