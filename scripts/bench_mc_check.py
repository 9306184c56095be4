"""The Monte Carlo reference of a viscous run's certification: its error bound against its cost.

    .venv/bin/python scripts/bench_mc_check.py RUN [--variants euler:256:16,heun:512:16]

For the parameters of a trained run with ``field.viscosity`` > 0 (RUN/theta.npz,
RUN/config.toml), at all its training and test points: the PDE's u_h(0, X) on the mesh of its
config, the characteristics' max logit difference from it (the inviscid reference), and for
each variant SCHEME:PATHS:STEPS[:independent] (scheme euler or heun; antithetic paths unless
``independent``) the Monte Carlo's
largest standard error, bias and bound 3 SE + bias, the max |u_h − MC|, what lies beyond the
bound, the label agreement and the CPU seconds of this process (``learn/certify.py`` chose its
defaults from these). The seed is the run's ``train.seed``, as in training.
"""

from __future__ import annotations

from mpi4py import MPI  # before dolfinx

import argparse
import time
from pathlib import Path

import numpy as np

from solver.config import load_config
from solver.fem.pointeval import evaluate_everywhere
from solver.learn import certify
from solver.learn.train import Problem
from solver.model import characteristics, stochastic
from solver.rundir import store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--variants", default="euler:256:16,heun:256:16,heun:512:16,heun:1024:16")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    config = load_config(args.run / store.CONFIG)
    epsilon = config.field.viscosity
    with Problem.build(comm, config) as problem:
        p = store.read_parameters(args.run / store.THETA).p
        theta, A, b = problem.J.split(p)
        field = problem.model.field(theta)
        X = np.concatenate([problem.dataset.X_train, problem.dataset.X_test])
        fe = evaluate_everywhere(problem.solver.V, problem.J.evaluate(p).u0, X, "data")
        logits = lambda x: x @ A.T + b  # noqa: E731
        inviscid = characteristics.solve(comm, field, logits, X).u0
        print(f"{len(X)} points, ε = {epsilon}, {problem.resolution}: characteristics max |Δ| "
              f"{np.abs(fe - inviscid).max():.3f}, labels agree {np.mean(fe.argmax(1) == inviscid.argmax(1)):.4f}")
        print(f"{'variant':>28} {'max SE':>7} {'max bias':>8} {'max bound':>9} {'max |Δ|':>7} {'beyond':>6} "
              f"{'agree':>6} {'CPU s':>6}")
        for variant in args.variants.split(","):
            scheme, paths, steps, *independent = variant.split(":")
            started = time.process_time()
            mc = stochastic.solve(comm, field, problem.domain, logits, X, epsilon, paths=int(paths), steps=int(steps),
                                  seed=config.train.seed, antithetic=not independent, heun=scheme == "heun")
            seconds = time.process_time() - started
            beyond = certify.excess(fe, mc.u0, mc.bound).max()
            print(f"{variant:>28} {mc.standard_error.max():7.3f} {mc.bias.max():8.3f} {mc.bound.max():9.3f} "
                  f"{np.abs(fe - mc.u0).max():7.3f} {beyond:6.3f} {np.mean(fe.argmax(1) == mc.u0.argmax(1)):6.4f} "
                  f"{seconds:6.2f}")


if __name__ == "__main__":
    main()
