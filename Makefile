# The few commands people type. Both create or reuse .venv and install what they need.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint format bench clean

# mypy covers the torch-free core, the service and the agent; lint-imports checks the layers
# (pyproject.toml, [tool.importlinter]).
TYPED := mess/__init__.py mess/space.py mess/policy.py mess/stats.py mess/costs.py \
	mess/bundle.py mess/timings.py mess/evaluate.py mess/client.py mess/onnx mess/search service profilers

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mess demo --workdir ./mess-demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(TYPED)
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/python -m pytest -q -m "not slow and not gpu" ; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
