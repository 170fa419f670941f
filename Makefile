# The two commands a newcomer needs are `make demo` and `make test`; both install what is missing first.
PYTHON ?= python3
NETBENCH = $(PYTHON) -m netbench

.PHONY: setup demo test bench lint clean

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(PYTHON) scripts/demo.py

test: setup
	$(PYTHON) -m pytest -q

bench: setup
	$(PYTHON) bench/lab_bench.py
	$(PYTHON) bench/run_bench.py
	$(PYTHON) bench/trace_bench.py
	$(PYTHON) bench/demo_bench.py

lint: setup
	$(PYTHON) -m ruff check netbench probes tests bench scripts

clean: setup
	$(NETBENCH) lab down
