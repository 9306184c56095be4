"""L-BFGS against an inexact Newton–Krylov method on one learning problem, side by side (issue 21,
item 4): test accuracy against optimizer time, and the time to a target.

    mpirun -n 2 .venv/bin/python scripts/bench_optimizers.py problems/peaks.toml --target 0.9 --seconds 120

Newton–Krylov: scipy's trust-region Newton-CG (``trust-ncg``) with Hessian-vector products by
differences of gradients, H v ≈ (∇J(p + εv) − ∇J(p))/ε. One product costs one forward and one
adjoint solve: what a Gauss–Newton product costs (one incremental forward, one incremental adjoint),
so its iterations and time show what a Gauss–Newton–Krylov optimizer could gain over L-BFGS on
this problem. L-BFGS: the project's (``learn/optimize.py``), the problem file's memory and step.
Both start from the run's initial θ on the problem file's mesh (no refinement, no checks: the
optimizers alone). Accuracy is the PDE's test accuracy, evaluated off the clock.
"""

from __future__ import annotations

# mpi4py before dolfinx (imported through solver): dolfinx needs the MPI library mpi4py loads.
from mpi4py import MPI

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.optimize

from solver.config import load_config
from solver.learn import optimize
from solver.learn.train import Problem, initial_parameters


class Clock:
    """Optimizer seconds (evaluations of accuracy off the clock) and the accuracy curve."""

    def __init__(self, comm, problem: Problem, target: float):
        self.comm, self.problem, self.target = comm, problem, target
        self.started, self.paused = time.perf_counter(), 0.0
        self.curve: list[tuple[int, float, float, int]] = []
        self.evaluations = 0

    def record(self, iteration: int, p: np.ndarray) -> float:
        pause = time.perf_counter()
        self.problem.J.evaluate(p)
        accuracy = self.problem.accuracy(self.comm)[1]
        elapsed = pause - self.started - self.paused
        self.curve.append((iteration, elapsed, accuracy, self.evaluations))
        self.paused += time.perf_counter() - pause
        return elapsed

    def to_target(self):
        return next(((i, t) for i, t, a, _ in self.curve if a >= self.target), (None, None))


def run_lbfgs(comm, problem: Problem, p0: np.ndarray, clock: Clock, seconds: float) -> None:
    tc = problem.config.train
    J = problem.J

    def fun(p):
        clock.evaluations += 1
        return J.value_and_gradient(p)

    state = optimize.start(fun, p0)
    while clock.record(state.iteration, state.p) < seconds and clock.curve[-1][2] < clock.target:
        state = optimize.lbfgs_step(fun, state, memory=tc.memory, max_step=tc.max_step)


def run_newton_krylov(comm, problem: Problem, p0: np.ndarray, clock: Clock, seconds: float) -> None:
    J = problem.J
    cache: dict = {}

    def fun(p):
        key = p.tobytes()
        if cache.get("key") != key:
            clock.evaluations += 1
            cache["key"], cache["value"] = key, J.value_and_gradient(p)
        return cache["value"]

    def hessp(p, v):
        _, g = fun(p)
        eps = 1e-6 * max(1.0, float(np.linalg.norm(p))) / max(float(np.linalg.norm(v)), 1e-300)
        clock.evaluations += 1
        _, g2 = J.value_and_gradient(p + eps * v)
        return (g2 - g) / eps

    iteration = [0]

    def callback(p):
        iteration[0] += 1
        if clock.record(iteration[0], p) >= seconds or clock.curve[-1][2] >= clock.target:
            raise StopIteration

    clock.record(0, p0)
    try:
        scipy.optimize.minimize(lambda p: fun(p)[0], p0, jac=lambda p: fun(p)[1], hessp=hessp,
                                method="trust-ncg", callback=callback, options=dict(maxiter=10_000, gtol=1e-12))
    except StopIteration:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--seconds", type=float, default=120.0, help="optimizer time budget per method")
    parser.add_argument("--json", type=Path, help="write the curves here")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    config = load_config(args.config)
    results = {}
    for name, method in (("L-BFGS", run_lbfgs), ("Newton-Krylov (trust-ncg)", run_newton_krylov)):
        with Problem.build(comm, config) as problem:
            p0 = initial_parameters(problem)
            clock = Clock(comm, problem, args.target)
            method(comm, problem, p0, clock, args.seconds)
            iteration, seconds = clock.to_target()
            results[name] = dict(iterations_to_target=iteration, seconds_to_target=seconds,
                                 final_accuracy=clock.curve[-1][2], iterations=clock.curve[-1][0],
                                 gradients=clock.evaluations, curve=clock.curve)
    if comm.rank == 0:
        print(f"{args.config.name}, target {args.target}, scheme {config.solver.scheme}, {comm.size} rank(s)")
        print(f"{'method':>28} {'iterations':>10} {'gradients':>9} {'to target':>12} {'final acc':>9}")
        for name, r in results.items():
            shown = "—" if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.2f} s (it. {r['iterations_to_target']})"
            print(f"{name:>28} {r['iterations']:>10} {r['gradients']:>9} {shown:>12} {r['final_accuracy']:>9.3f}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
