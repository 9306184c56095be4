"""The stochastic ResNet's mean against the viscous PDE: mean of M samples → u(0, x) at rate M^{-1/2}.

    .venv/bin/python scripts/bench_noisy_resnet.py [--eps 0.02] [--depth 64] [--points 20]

A random MLP field (eq. 2, 2 slabs, seed 0) on [−1, 1]² and a linear output layer f(x) = A x + b
(K = 2). The PDE ∂t u + v·∇u + εΔu = 0, u(T) = f is solved on a DG2 mesh of ``--cells`` (its own
error is checked by the difference to the half-as-fine mesh); the noisy ResNet of ``--depth``
Euler blocks (``export --noise``: numpy, ``resnet.net.sample_mean``) is averaged over M samples
for M = 16 … 16384. Printed: the RMS over the points of |mean − u_h(0)|, the mean standard error,
and the slope of log(error) against log(M) (−½ is the Monte Carlo rate, until the floor of the
blocks' O(s) bias, which is measured as the difference of the means at depth N and N/2 with the
largest M). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from mpi4py import MPI

from solver.convergence import observed_orders
from solver.fem.mesh import create_mesh
from solver.fem.pointeval import evaluate_everywhere
from solver.fem.transport import TransportSolver
from solver.model.domain import Box
from solver.model.velocity import VelocityModel
from solver.resnet.net import OutputLayer, resnet_from_velocity, sample_mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, default=0.02)
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--cells", type=int, default=32)
    parser.add_argument("--max-samples", type=int, default=16384)
    args = parser.parse_args()
    comm = MPI.COMM_SELF
    domain = Box((-1.0, -1.0), (1.0, 1.0))
    model = VelocityModel(dim=2, width=8, slabs=2, T=1.0, activation="tanh", domain=domain)
    theta = model.init(0, 1.0)
    rng = np.random.default_rng(0)
    A, b = rng.normal(size=(2, 2)), rng.normal(size=2)
    x = rng.uniform(-0.8, 0.8, (args.points, 2))

    pde = []
    for cells in (args.cells // 2, args.cells):
        with TransportSolver(create_mesh(comm, domain, cells), degree=2, num_components=2,
                                 viscosity=args.eps) as solver:
            t0 = time.perf_counter()
            result = solver.solve(model.field(theta), lambda y: y @ A.T + b, keep=False)
            pde.append(evaluate_everywhere(solver.V, result.u0, x, "points"))
            print(f"PDE DG2 {cells}²: {sum(result.steps_per_piece)} steps, {time.perf_counter() - t0:.2f} s")
    u = pde[-1]
    print(f"PDE error estimate max |u_h − u_2h| = {np.abs(pde[1] - pde[0]).max():.2e}")

    out = OutputLayer("linear", A, b)
    net = resnet_from_velocity(model, theta, args.depth, "euler", output=out, noise=args.eps)
    half = resnet_from_velocity(model, theta, args.depth // 2, "euler", output=out, noise=args.eps)
    print(f"ε = {args.eps:g}, {args.depth} Euler blocks, {args.points} points")
    print("| M | RMS |mean − u_h(0)| | mean SE | slope | seconds |")
    print("|---|---|---|---|---|")
    prev = None
    M = 16
    while M <= args.max_samples:
        t0 = time.perf_counter()
        mean, se = sample_mean(net, x, M, np.random.default_rng(M))
        seconds = time.perf_counter() - t0
        err = float(np.sqrt(np.mean((mean - u) ** 2)))
        slope = "" if prev is None else f"{observed_orders([prev[0], M], [prev[1], err])[0]:.2f}"
        print(f"| {M} | {err:.3e} | {float(se.mean()):.3e} | {slope} | {seconds:.2f} |")
        prev = (M, err)
        last = mean
        M *= 4
    mean_half, _ = sample_mean(half, x, prev[0], np.random.default_rng(1))
    print(f"blocks' bias estimate (depth {args.depth} vs {args.depth // 2}, M = {prev[0]}): "
          f"RMS {np.sqrt(np.mean((last - mean_half) ** 2)):.2e}")


if __name__ == "__main__":
    main()
