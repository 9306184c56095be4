# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # The PDE against the characteristics on a rotation
#
# Everything this project reports is checked against the method of characteristics: u is
# constant along x' = v(t, x) (eq. 3), so u(0, x) = f(q(T; x)) (eq. 6), which an ODE solver
# computes to 1e-10 without any mesh. This demo shows that check on the one field whose flow is
# known in closed form: the rigid rotation v(x) = ω (−x2, x1) of the unit disk, one revolution
# in time T. A Gaussian bump f, carried backward by the discontinuous Galerkin solver
# (upwind, SSP-RK3), must come back to where it started.
#
# Run it with `python docs/demos/demo_rotation.py [--quick]` (or under `mpirun -n 2`). The
# refinement study prints the L2 difference ‖u_h(0) − u(0)‖ and its observed order as the
# mesh is refined: about 2 for DG1 (k + 1). `--quick` uses two coarse meshes. `make demo-pages`
# renders it as a page with its output and figure ([docs/python-api.md](../python-api.md#demos)).

# %%
from mpi4py import MPI  # before dolfinx

import argparse
import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from solver.config import load_config

# The repository root, where problems/ is (a notebook has no __file__: it runs from the root).
ROOT = Path(__file__).resolve().parents[2] if "__file__" in globals() else Path.cwd()
# Known options only: a notebook kernel has arguments of its own.
parser = argparse.ArgumentParser(description="the PDE against the characteristics on a rotation")
parser.add_argument("--quick", action="store_true", help="two coarse meshes (for the tests)")
args, _ = parser.parse_known_args()
comm = MPI.COMM_WORLD


def say(*text) -> None:
    if comm.rank == 0:
        print(*text, flush=True)


# %% [markdown]
# ## The problem
#
# problems/rotation_disk.toml: the unit disk (a gmsh mesh, `cells` across the diameter),
# `field.kind = "rotation"` with ω = 2π and T = 1, and a Gaussian terminal value centred at
# (0.4, 0) with σ = 0.2.

# %%
config = load_config(ROOT / "problems" / "rotation_disk.toml")
cells = [8, 16] if args.quick else [16, 32, 64]
if args.quick:
    config = dataclasses.replace(config, compare=dataclasses.replace(config.compare, points=100, grid=17))

# %% [markdown]
# ## One mesh, three answers
#
# `solve_and_compare` solves the PDE on one mesh and evaluates u_h(0, ·) at random points in Ω
# and on a grid; the characteristics give u(0, ·) at the same points; the rotation's exact flow
# gives the closed-form solution, so the L2 error against it is known too.

# %%
from solver.check.compare_field import format_table, refinement_study, sample_points, solve_and_compare

points, grid = sample_points(config)
with solve_and_compare(comm, config, cells[-1], points, grid) as run:
    c = run.comparison
    say(f"{cells[-1]} cells across, DG{config.mesh.degree}, {c.dofs} dofs, {c.steps} time steps:")
    say(f"  max |u_h − characteristics| at {len(points)} points: {c.max_points:.2e}")
    say(f"  L2 difference to the characteristics {c.l2:.2e}, to the exact solution {c.l2_exact:.2e}")
    exact = run.field.exact_flow(points, 0.0, run.field.T)  # one revolution: back where it started
    say(f"  the characteristics' q(T) against the exact rotation: "
        f"{np.max(np.abs(run.ref_points - run.terminal(exact))):.1e}")

# %% [markdown]
# ## Refinement
#
# Halving h should divide the L2 error by about 2^(k+1) = 4 for DG1: the table's "order"
# column is log2 of the ratio of successive errors.

# %%
study = refinement_study(comm, config, cells)
say(format_table(study))
rows = study["rows"]
h = np.array([2.0 / r["cells"] for r in rows])  # the nominal cell size: the diameter over cells
l2 = np.array([r["l2"] for r in rows])
figure, ax = plt.subplots(figsize=(5, 4))
ax.loglog(h, l2, "o-", label="‖u_h(0) − u(0)‖ (L2)")
ax.loglog(h, l2[-1] * (h / h[-1]) ** 2, "k--", label="h² (order k + 1 = 2)")
ax.set_xlabel("h")
ax.set_xticks(h, [f"{v:g}" for v in h])
ax.tick_params(which="minor", labelbottom=False)
ax.set_ylabel("L2 error")
ax.legend()
figure.tight_layout()

result = dict(study=study, max_points=c.max_points, l2=c.l2, l2_exact=c.l2_exact)
