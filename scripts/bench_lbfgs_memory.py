"""What the L-BFGS memory should do when training raises the resolution: keep its pairs or drop them.

    .venv/bin/mpirun -n 2 .venv/bin/python scripts/bench_lbfgs_memory.py [--iterations 40]

Trains the same small 3D problem twice, one after the other: as ``train`` does (the pairs
(s, y) kept across a raise of the resolution: y holds differences of gradients of the previous
discrete J, which approximate the same continuous curvature) and with the pairs dropped at every
raise (a restart from steepest descent on the new mesh). The problem is the one that drifts on
its coarse mesh (circles 3D from 5³ DG1, 120 points; tests/test_certify.py), so it raises the
resolution during training. Prints, for each, the resolutions and the iterations they came at,
the loss, the accuracy by the characteristics, and the objective evaluations used.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from mpi4py import MPI

from solver.config import config_from_dict
from solver.learn import train as training

PROBLEM = dict(
    domain=dict(kind="box", lower=[-1, -1, -1], upper=[1, 1, 1]),
    mesh=dict(cells=5),
    field=dict(width=6, slabs=3, activation="tanh"),
    data=dict(kind="circles", points=120, noise=0.05, factor=0.5, augment_dim=3, test_fraction=0.25,
              margin=0.15),
    train=dict(max_step=2.0, check_every=5, tolerance=1.0, save_every=100),
    output=dict(png=False, vtx=False),
)


def run(comm, iterations: int, keep: bool, out: Path) -> training.Outcome:
    config = config_from_dict({**PROBLEM, "train": {**PROBLEM["train"], "iterations": iterations}})
    raise_resolution = training.raise_resolution

    def dropping(comm, problem, state, new):
        raised = raise_resolution(comm, problem, state, new)
        if raised is None:
            return None
        problem, state = raised
        return problem, dataclasses.replace(state, s=[], y=[])

    training.raise_resolution = raise_resolution if keep else dropping
    if comm.rank == 0:
        out.mkdir(parents=True)
    comm.Barrier()
    try:
        return training.train(comm, training.Problem.build(comm, config), out)
    finally:
        training.raise_resolution = raise_resolution


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(comm.bcast(tmp))
        rows = []
        for keep in (True, False):
            outcome = run(comm, args.iterations, keep, out / ("kept" if keep else "dropped"))
            raises = [(row["iteration"], int(row["cells"]), int(row["degree"]), int(row["refinements"]))
                      for prev, row in zip(outcome.history, outcome.history[1:])
                      if (prev["cells"], prev["degree"], prev["refinements"]) != (row["cells"], row["degree"], row["refinements"])]
            rows.append((keep, outcome.state.value, outcome.check.test.accuracy_characteristics,
                         outcome.check.train.accuracy_characteristics, outcome.state.evaluations, raises))
            outcome.problem.destroy()
            comm.Barrier()
    if comm.rank == 0:
        print(f"{args.iterations} iterations, {comm.size} rank(s)\n")
        print("| L-BFGS pairs at a raise | final loss | train (flow) | test (flow) | evaluations | raises (iteration, cells, degree, local) |")
        print("|---|---|---|---|---|---|")
        for keep, loss, test, train_acc, evaluations, raises in rows:
            print(f"| {'kept' if keep else 'dropped'} | {loss:.5f} | {100 * train_acc:.1f}% | {100 * test:.1f}% | "
                  f"{evaluations} | {raises} |")


if __name__ == "__main__":
    main()
