"""Cost of one gradient (forward + adjoint + parameter chain) against one forward solve, and the
time per optimizer iteration as the number of data points N grows on a fixed mesh.

Reported: value+gradient / forward, and the gradient alone ((value+gradient − forward) /
forward: the adjoint plus the parameter gradient, the issue's measure), as medians over
repeats of the two timed back to back.

    .venv/bin/mpirun -n 2 .venv/bin/python scripts/bench_gradient.py [--cells 48] [--quick]
    .venv/bin/mpirun -n 2 .venv/bin/python scripts/bench_gradient.py --config problems/moons.toml \
        --sizes 1000,10000 --json gradient.json
    .venv/bin/python scripts/bench_gradient.py --cases box48,peaks13-dg1,peaks13-dg2 \
        --theta runs/peaks/theta.npz

``--cases`` prints the gradient ratio table of issue #15 instead of the N sweep (``--json`` writes
it too; ``--quick`` makes the cases tiny, for the tests): the default
case at 48² and N = 10³, and peaks (``problems/peaks.toml``) on a 13³ mesh with DG1 and DG2 at
its 1000 points, at the parameters of ``--theta`` (a run's theta.npz, e.g. of
``train problems/peaks.toml``; without it, the initial θ, whose field is slower and takes fewer
steps than a trained one).

Without ``--config``: a DG1 box of ``--cells``², width 8, 4 slabs, K = 2, uniform points with
XOR labels, θ of scale 1.5. With ``--config``: the problem file's domain, mesh, field and
objective, its data kind generated with N points (no test split, scaled into Ω as a training run
does), θ and output layer as a run starts them. ``--json`` also writes the rows, the parameters
used (θ, A, b) and every rank's peak resident memory (ru_maxrss).

Both costs are measured side by side in one run (medians of repeats), at a fixed θ and step
count, so the ratio does not depend on the machine's load as much as the times do.
"""

from __future__ import annotations

# mpi4py before dolfinx: dolfinx needs the MPI library mpi4py loads (else libmpi.so.12 is not found).
from mpi4py import MPI

import argparse
import dataclasses
import json
import resource
import time
from pathlib import Path

import numpy as np

from solver.config import SolverConfig, load_config
from solver.model.domain import Box
from solver.fem.affine import transported_components
from solver.fem.semilagrangian import SemiLagrangianSolver
from solver.fem.transport import TransportSolver
from solver.fem.mesh import create_mesh
from solver.learn.reduced import ReducedFunctional
from solver.learn.train import load_dataset, velocity_model
from solver.model.velocity import VelocityModel
from solver.rundir.store import read_parameters

PEAKS = Path(__file__).resolve().parents[1] / "problems" / "peaks.toml"
# The gradient ratio table's cases: (label, case maker given --theta, N); --quick: 8² and 4³.
TABLE_CASES = {
    "box48": ("48² box, DG1, K = 2", lambda theta: DefaultCase(48), 1000),
    "peaks13-dg1": ("peaks 13³, DG1, K = 5", lambda theta: ConfigCase(PEAKS, 13, 1, theta), 1000),
    "peaks13-dg2": ("peaks 13³, DG2, K = 5", lambda theta: ConfigCase(PEAKS, 13, 2, theta), 1000),
}
QUICK_CASES = {
    "box48": ("8² box, DG1, K = 2", lambda theta: DefaultCase(8), 100),
    "peaks13-dg1": ("peaks 4³, DG1, K = 5", lambda theta: ConfigCase(PEAKS, 4, 1, theta), 100),
    "peaks13-dg2": ("peaks 4³, DG2, K = 5", lambda theta: ConfigCase(PEAKS, 4, 2, theta), 100),
}


def timed(comm, fn) -> float:
    comm.Barrier()
    t = time.perf_counter()
    fn()
    comm.Barrier()
    return comm.allreduce(time.perf_counter() - t, op=MPI.MAX)


def paired_times(comm, forward, gradient, repeats):
    """Medians of the forward time, the value+gradient time and their ratio, timed in pairs."""
    pairs = [(timed(comm, forward), timed(comm, gradient)) for _ in range(repeats)]
    f, g = np.array(pairs).T
    return float(np.median(f)), float(np.median(g)), float(np.median(g / f))


class DefaultCase:
    """The README's case: a DG1 box of ``cells``², width 8, 4 slabs, uniform points, XOR labels."""

    def __init__(self, cells: int):
        self.cells, self.degree, self.num_classes = cells, 1, 2
        self.domain = Box((-1.0, -1.0), (1.0, 1.0))
        self.model = VelocityModel(dim=2, width=8, slabs=4, T=1.0, activation="tanh", domain=self.domain)
        self.objective = {}
        self.rng = np.random.default_rng(0)
        self.title = f"DG1, {cells}x{cells} box, width 8, 4 slabs, K = 2"

    def data(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n points (shape=(n, 2)) and their labels, the same on every rank."""
        X = self.rng.uniform(-0.8, 0.8, (n, 2))
        return X, (X[:, 0] * X[:, 1] > 0).astype(int)

    def initial(self, J: ReducedFunctional) -> np.ndarray:
        """The parameters p = (θ, A, b) to time at."""
        return J.initial(0, 1.5)


class ConfigCase:
    """A problem file's domain, mesh, field and objective; its data kind with N points (the
    mesh's cells and degree, and the parameters, may be given instead of the file's)."""

    def __init__(self, path: Path, cells: int | None = None, degree: int | None = None,
                 theta: Path | None = None):
        self.config = load_config(path)
        c = self.config
        self.cells, self.degree = cells or c.mesh.cells, degree or c.mesh.degree
        self.parameters = read_parameters(theta).p if theta else None
        self.domain = c.domain_object()
        self.model = velocity_model(c, self.domain)
        self.num_classes = load_dataset(c, self.domain).num_classes
        self.objective = dict(loss=c.train.loss, weight_decay=c.train.weight_decay,
                              smoothness=c.train.smoothness, kinetic=c.train.kinetic)
        self.title = (f"{path}: DG{self.degree}, {self.cells} cells/direction, width {c.field.width}, "
                      f"{c.field.slabs} slabs, K = {self.num_classes}")

    def data(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n training points of the config's data kind in Ω and their labels (no test split)."""
        data = dataclasses.replace(self.config.data, points=n, test_fraction=0.0)
        dataset = load_dataset(dataclasses.replace(self.config, data=data), self.domain)
        return dataset.X_train, dataset.y_train

    def initial(self, J: ReducedFunctional) -> np.ndarray:
        """The given parameters, else those a training run starts from."""
        if self.parameters is not None:
            if self.parameters.shape != (J.n_params,):
                raise SystemExit(f"--theta holds {self.parameters.size} parameters, the problem has {J.n_params}")
            return self.parameters
        return J.initial(self.config.train.seed, self.config.field.scale)


def peak_memory_per_rank(comm) -> list[int]:
    """Every rank's peak resident set size so far (ru_maxrss), in bytes (collective)."""
    return comm.allgather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def measure(comm, case, n: int, repeats: int, stage_memory: int | None = None, scheme: str = "rk3") -> dict:
    """Forward and value+gradient times of ``case`` at N = n, paired medians (collective).
    ``stage_memory``: the solver's, bytes per rank (None: "auto", the default); ``scheme``:
    "rk3" (DG, the case's degree) or "sl" (continuous P of the case's degree)."""
    mesh = create_mesh(comm, case.domain, case.cells)
    components = transported_components(case.num_classes, case.domain.dim)
    if scheme == "sl":
        solver = SemiLagrangianSolver(mesh, degree=case.degree, num_components=components)
    else:
        solver = TransportSolver(mesh, degree=case.degree, num_components=components, checkpoint_every=4,
                                 stage_memory=stage_memory)
    X, y = case.data(n)
    with ReducedFunctional(solver, case.model, X[comm.rank :: comm.size], y[comm.rank :: comm.size],
                          case.num_classes, **case.objective) as J:
        p = case.initial(J)
        J.value_and_gradient(p)  # compile forms, warm caches
        J.freeze_steps(J.last.steps)
        forward, gradient, ratio = paired_times(comm, lambda: J(p), lambda: J.value_and_gradient(p), repeats)
        row = dict(N=n, K=case.num_classes, components=components, scheme=scheme, dofs=solver.num_dofs_global, steps=int(sum(J.last.steps)), forward_s=forward,
                   value_and_gradient_s=gradient, ratio=ratio, parameters=J.split(p),
                   stage_memory=getattr(solver, "stage_memory", 0) or 0)
    solver.destroy()
    return row


def ratio_table(comm, names: list[str], theta: Path | None, repeats: int, stage_memory: int | None,
                quick: bool = False, json_path: Path | None = None, scheme: str = "rk3") -> None:
    """The gradient ratio table: per case, forward s, value+gradient s and their ratio (printed,
    and written to ``json_path`` if given)."""
    cases = QUICK_CASES if quick else TABLE_CASES
    unknown = [name for name in names if name not in cases]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; expected some of {list(cases)}")
    rows = []
    for name in names:
        label, make, n = cases[name]
        row = measure(comm, make(theta), n, repeats, stage_memory, scheme)
        rows.append((label, row, max(peak_memory_per_rank(comm))))
        if comm.rank == 0:  # as it goes: the DG2 case takes minutes
            print(f"{label}: forward {row['forward_s']:.3f} s, value+gradient {row['value_and_gradient_s']:.3f} s",
                  flush=True)
    if comm.rank == 0:
        budget = "auto" if stage_memory is None else f"{stage_memory / 2**20:.0f} MiB"
        print(f"scheme {scheme}, {comm.size} rank(s), N = 10³, stage_memory {budget}, medians of {repeats} paired measurements"
              + (f", parameters of {theta}" if theta else ", initial parameters"))
        print("| case | dofs × components | steps | stage memory | forward s | value + gradient s | gradient / forward "
              "| peak RSS so far |")
        print("|---|---|---|---|---|---|---|---|")
        for label, r, rss in rows:
            print(f"| {label} | {r['dofs']:,} × {r['components']} | {r['steps']} | {r['stage_memory'] / 2**20:.0f} MiB | "
                  f"{r['forward_s']:.3f} | {r['value_and_gradient_s']:.3f} | {r['ratio'] - 1:.2f} | "
                  f"{rss / 2**20:.0f} MiB |")
        if json_path:
            json_path.write_text(json.dumps(dict(
                ranks=comm.size, repeats=repeats, theta=str(theta) if theta else None, scheme=scheme,
                stage_memory="auto" if stage_memory is None else stage_memory,
                rows=[dict(case=name, label=label, peak_rss_bytes=rss, **{k: v for k, v in r.items() if k != "parameters"})
                      for name, (label, r, rss) in zip(names, rows)]), indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=48)
    parser.add_argument("--config", type=Path, default=None, help="take mesh, field, data kind and objective from this problem file")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--quick", action="store_true", help="small mesh and N (what the tests run)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--cases", default=None, help=f"the gradient ratio table of these cases instead: "
                        f"comma-separated, of {','.join(TABLE_CASES)}")
    parser.add_argument("--theta", type=Path, default=None, help="--cases: the peaks cases' parameters (a run's theta.npz)")
    parser.add_argument("--scheme", choices=("rk3", "sl"), default="rk3", help="the transport scheme (solver.scheme)")
    parser.add_argument("--stage-memory", default=SolverConfig.stage_memory,
                        help='the solver\'s stage_memory: MiB per rank, or "auto" (the default)')
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    stage_memory = None if args.stage_memory == "auto" else int(args.stage_memory) * 2**20
    if args.cases:
        ratio_table(comm, args.cases.split(","), args.theta, 1 if args.quick else args.repeats, stage_memory,
                    args.quick, args.json, args.scheme)
        return
    cells, sizes, repeats = args.cells, [int(s) for s in args.sizes.split(",")], args.repeats
    if args.quick:
        cells, sizes, repeats = 8, [100, 1000], 1
    case = ConfigCase(args.config) if args.config else DefaultCase(cells)
    rows = []
    for n in sizes:
        row = measure(comm, case, n, repeats, scheme=args.scheme)
        theta, A, b = row.pop("parameters")
        rows.append(row)
    memory = peak_memory_per_rank(comm)
    if comm.rank == 0:
        print(f"{case.title}, {comm.size} rank(s), medians of {repeats}")
        print(f"{'N':>9} {'dofs':>7} {'steps':>6} {'forward s':>10} {'value+grad s':>13} "
              f"{'(value+grad)/fwd':>17} {'grad/fwd':>9}")
        for r in rows:
            print(f"{r['N']:9d} {r['dofs']:7d} {r['steps']:6d} {r['forward_s']:10.3f} "
                  f"{r['value_and_gradient_s']:13.3f} {r['ratio']:17.2f} {r['ratio'] - 1:9.2f}")
        if args.json:
            args.json.write_text(json.dumps(dict(
                title=case.title, ranks=comm.size, repeats=repeats, dim=case.domain.dim, cells=case.cells,
                degree=case.degree, classes=case.num_classes, rows=rows, peak_rss_bytes_per_rank=memory,
                theta=theta.tolist(), A=A.tolist(), b=b.tolist(),
            ), indent=1))


if __name__ == "__main__":
    main()
