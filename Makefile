# ismip6_assets: `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_SOURCE := data/sample-archive
DEMO_STORE := data/store
export DAGSTER_HOME := $(CURDIR)/dagster_home

.PHONY: setup test demo bench clean

define require_312
	@$(1) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' || { \
	  echo "ERROR: Python 3.12 is required, but $(1) is $$($(1) --version 2>&1)."; \
	  echo "       icechunk>=2 and virtualizarr>=2.6 need 3.12 (on 3.11 pip silently installs versions"; \
	  echo "       that decode NetCDF3 fill values wrong). Install 3.12 (pyenv install 3.12.1; the repo's"; \
	  echo "       .python-version selects it) or run: make PYTHON=/path/to/python3.12 setup"; \
	  exit 1; }
endef

$(VENV)/.installed: pyproject.toml
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then \
	  echo "ERROR: $(VENV) was made with $$($(PY) --version 2>&1), not 3.12: remove it (rm -rf $(VENV))"; exit 1; fi
	$(call require_312,$(PYTHON))
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(call require_312,$(PY))
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -n 2 --dist loadfile

demo: setup
	@[ -d $(DEMO_SOURCE)/Projection-AIS ] || $(VENV)/bin/ismip6 sample-archive $(DEMO_SOURCE)
	$(VENV)/bin/ismip6 run --source $(DEMO_SOURCE) --store $(DEMO_STORE)
	$(VENV)/bin/ismip6 reconcile --source $(DEMO_SOURCE) --store $(DEMO_STORE)

bench: setup
	$(PY) bench/throughput.py --scale 0.05

clean:
	rm -rf data dagster_home/history dagster_home/schedules dagster_home/storage dagster_home/logs
