# The README's commands. Each creates .venv (Python >= 3.12) if it is missing.
NP ?= 2
PY := .venv/bin/python
MPIRUN := .venv/bin/mpirun

.PHONY: demo demo-pages test test-quick check-install transport bench benchmarks env

env:
	scripts/bootstrap.sh

# The main job: learn two moons on NP ranks, then check the learned run against the characteristics.
demo: env
	$(MPIRUN) -n $(NP) $(PY) -m solver train problems/moons.toml --out runs/moons --force
	$(MPIRUN) -n $(NP) $(PY) -m solver compare runs/moons

# The demos of docs/demos/ executed as pages with their output and figures: build/demo-pages/
# (git-ignored; docs/demos.md). Installs the `demos` extra (jupytext, nbconvert) if missing.
demo-pages: env
	$(PY) -c "import jupytext, nbconvert, ipykernel" 2>/dev/null || $(PY) -m pip install --quiet -e ".[test,demos]"
	$(PY) -m scripts.demo_pages --out build/demo-pages

# The transport solver alone: a random field, PDE vs characteristics, with a refinement study.
transport: env
	$(MPIRUN) -n $(NP) $(PY) -m solver compare problems/default.toml --out runs/default --force

# The full suite CI runs: every test on 1 rank, then the parallel ones on 2 ranks.
test:
	scripts/test.sh

# The developer's loop, one rank: the tests not marked slow (pyproject.toml's markers).
# Measured with `time make test-quick` (idle machine, load 0.2, 2026-12-05, at 7ab9385):
# 1 min 23 s wall, 834 tests.
test-quick: env
	$(PY) -m pytest tests -m "not slow" -q

# A user's install: pip install . (not editable) into a fresh venv, which trains moons and a disk.
check-install:
	scripts/check_install.sh

bench: env
	$(PY) -m scripts.bench_forward
	$(MPIRUN) -n $(NP) $(PY) scripts/bench_gradient.py

# The benchmark suite: learning, scaling in N, prediction, parallel scaling, memory, millions of
# points, the gradient's cost -> bench/report.md (~80 minutes).
benchmarks: env
	$(PY) -m scripts.benchmarks --out bench
