"""The picture of the README: the paper's Table 1 as this project realizes it, from a trained run.

    .venv/bin/python scripts/figure_flow_model.py runs/moons docs/flow-model.png

Left: the data at t = 0 carried by the learned velocity through its L slabs (one residual block
each) to t = T; the points at each slab time are the hidden states of the exported ResNet.
Right: the terminal value f (the learned output layer) at t = T and the prediction u(0, ·) = f∘q(T).
"""

from __future__ import annotations

from mpi4py import MPI  # noqa: F401  (before dolfinx, which needs the MPI library mpi4py loads)

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from solver.model import characteristics
from solver.config import load_config
from solver.learn.train import load_dataset, velocity_model


def main(run: Path, out: Path) -> None:
    config = load_config(run / "config.toml")
    domain = config.domain_object()
    data = load_dataset(config, domain)
    with np.load(run / "theta.npz") as f:
        theta, A, b = f["theta"], f["A"], f["b"]
    model = velocity_model(config, domain)
    field = model.field(theta)
    X, y = data.X_train[::2], data.y_train[::2]
    times = np.linspace(0.0, model.T, 8 * model.slabs + 1)
    traj = characteristics.trajectories(field, X, times)
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2), constrained_layout=True)

    ax = axes[0]
    for i in range(len(X)):
        ax.plot(traj[:, i, 0], traj[:, i, 1], "-", color=cmap(y[i]), lw=0.4, alpha=0.5)
    for j, t in enumerate(model.slab_times):
        k = int(round(t / model.T * (len(times) - 1)))
        ax.scatter(*traj[k].T[:2], s=6, color=[cmap(c) for c in y], alpha=0.9 if j in (0, model.slabs) else 0.35)
    ax.set_title(f"layers ↔ time slabs: x' = v(t, x), {model.slabs} slabs = {model.slabs} blocks (eq. 17)")
    ax.set_aspect("equal")

    ax = axes[1]
    g = np.linspace(-1, 1, 161)
    G = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    ax.contourf(g, g, (G @ A.T + b).argmax(1).reshape(161, 161).T, levels=[-0.5, 0.5, 1.5], colors=[cmap(0), cmap(1)], alpha=0.25)
    ax.scatter(*traj[-1].T[:2], s=6, color=[cmap(c) for c in y])
    ax.set_title("output function ↔ terminal value u(T, x) = f(x) = argmax(A x + b)")
    ax.set_aspect("equal")

    ax = axes[2]
    u0 = characteristics.flow(field, np.clip(G, -0.999, 0.999), 0.0, model.T) @ A.T + b
    ax.contourf(g, g, u0.argmax(1).reshape(161, 161).T, levels=[-0.5, 0.5, 1.5], colors=[cmap(0), cmap(1)], alpha=0.25)
    ax.scatter(*X.T[:2], s=6, color=[cmap(c) for c in y])
    ax.set_title("prediction ↔ initial value u(0, x) = f(q(T; x)) (eq. 6)")
    ax.set_aspect("equal")
    fig.suptitle("training ↔ the inverse problem: find v(t, x; θ) (eq. 2) and f so that u(0, X_i) fits y_i")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
