# The two commands of the quick start: `make demo` and `make test`.
# Both create .venv with the machine's python3 when it is missing and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean-venv

demo: $(STAMP)
	$(BIN)/intvit demo

# Two workers: Verilator builds and cocotb simulations of different units run side by side.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2

install: $(STAMP)

# Reinstall when the project's dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
