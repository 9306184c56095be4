# The two commands of the README. Each creates .venv (Python >= 3.12) if it is missing.
NP ?= 2

.PHONY: demo test bench env

env:
	scripts/bootstrap.sh

demo: env
	.venv/bin/mpirun -n $(NP) .venv/bin/python -m solver compare problems/default.toml --out runs/default --force

test:
	scripts/test.sh

bench: env
	scripts/bench_forward.sh
