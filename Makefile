# LifeLens: `make run` starts the dashboard, `make test` runs every test, `make bench` prints benchmark figures.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench venv clean

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m streamlit run app.py

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q -rf --durations=15 -p no:cacheprovider tests

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
