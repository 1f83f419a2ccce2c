# Quick start: `make demo` (main job on the embedded demo data) and `make test` (the test suite).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.uncol-installed
PIP    := $(PY) -m pip --disable-pip-version-check -q
NEED_KB := 6815744

.PHONY: venv demo test lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@free_kb=$$(df -Pk . | awk 'NR==2 {print $$4}'); \
	if [ -n "$$free_kb" ] && [ "$$free_kb" -lt $(NEED_KB) ]; then \
	  echo "warning: $$((free_kb / 1048576)) GiB free in $$(pwd); .venv needs about 6.5 GiB (torch's CUDA wheel) - free some space if pip stops with 'No space left on device'" >&2; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/uncol demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest tests

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf runs .pytest_cache
