# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Two moons, end to end
#
# The flow model of Li & Shi learns a velocity field v(t, x) on a domain Ω such that the
# transport equation ∂t u + v·∇u = 0, solved backward from the terminal value u(T, ·) = f
# (here logits f(x) = A x + b), classifies the data at t = 0: u(0, X_i) ≈ the label of X_i.
# This demo goes the whole way on scikit-learn's two moons:
#
# 1. train from a problem file (what `python -m solver train problems/moons.toml` does),
#    with the PDE certified against the characteristics;
# 2. compare the learned run (`python -m solver compare RUN`);
# 3. export it as an explicit ResNet (`python -m solver export RUN`) and run it with
#    onnxruntime;
# 4. load the run as a scikit-learn classifier and predict new points;
# 5. look at the pictures the run wrote.
#
# Run it with `python docs/demos/demo_moons.py [--quick] [--out DIR]`, or under
# `mpirun -n 2`: every step is collective, and every rank ends with the same numbers.
# `--quick` shrinks the problem (mesh, points, iterations) so that the test suite runs it in
# seconds (`tests/test_demos.py`). `make demo-pages` renders it as a page with its output and
# figures ([docs/python-api.md](../python-api.md#demos)).

# %%
from mpi4py import MPI  # before dolfinx, which needs the MPI library mpi4py loads

import argparse
import dataclasses
import logging
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import solver
from solver.config import load_config
from solver.parallel import on_rank0

# The repository root, where problems/ is (a notebook has no __file__: it runs from the root).
ROOT = Path(__file__).resolve().parents[2] if "__file__" in globals() else Path.cwd()
# Known options only: a notebook kernel has arguments of its own.
parser = argparse.ArgumentParser(description="two moons, end to end")
parser.add_argument("--quick", action="store_true", help="a reduced problem (for the tests)")
parser.add_argument("--out", type=Path, default=None, help="where the run goes (default: a temporary directory)")
args, _ = parser.parse_known_args()
comm = MPI.COMM_WORLD
out = args.out or Path(comm.bcast(tempfile.mkdtemp(prefix="demo-moons-") if comm.rank == 0 else None))
# The training log, one line per iteration, on rank 0 (as the command line prints it).
logging.basicConfig(level=logging.INFO if comm.rank == 0 else logging.WARNING, format="%(message)s")


def say(*text) -> None:
    if comm.rank == 0:
        print(*text, flush=True)


# %% [markdown]
# ## 1. Train
#
# A problem file says everything: Ω = [-1, 1]², the mesh and the transport scheme, the
# velocity model of eq. 2 (width, activation, θ constant on time slabs), 500 moons points of
# which 20% are held out, and the objective (cross entropy plus a kinetic-energy term that
# keeps the field small).

# %%
config = load_config(ROOT / "problems" / "moons.toml")
if args.quick:
    config = dataclasses.replace(
        config,
        mesh=dataclasses.replace(config.mesh, cells=12),
        data=dataclasses.replace(config.data, points=160),
        train=dataclasses.replace(config.train, iterations=12, check_every=6),
        output=dataclasses.replace(config.output, vtx=False),  # the pictures, not the ParaView files
    )

# %% [markdown]
# `solver.fit` is what `python -m solver train` runs. It makes the mesh, scales the data into
# Ω (one factor for all axes, the training points filling the central 80% of Ω), and sets up
# the transport solver and the reduced functional J(θ, A, b) with its adjoint gradient. Then
# L-BFGS runs on it; every `check_every` iterations and at the end, the training and test
# points are carried along the characteristics of the current field and the logits compared
# with the PDE's u_h(0, X): where they differ by more than `train.tolerance` the mesh is
# refined. The run directory gets config.toml, theta.npz, metrics.json, history.csv and the
# pictures.

# %%
outcome = solver.fit(config, out / "moons", comm=comm, force=True)
run, metrics, dataset = outcome.out, outcome.metrics, outcome.dataset
say(f"trained {metrics['iterations']} iterations on {outcome.resolution}: "
    f"test accuracy {metrics['test_accuracy']:.3f} (PDE), "
    f"{metrics['check']['test']['accuracy_characteristics']:.3f} (characteristics), "
    f"{'certified' if outcome.certified else 'NOT certified'}")

# %% [markdown]
# ## 2. Compare
#
# `compare_run` reads the run back, solves the PDE once more with the learned θ and checks it
# against the characteristics on the training and test points; it also measures the exported
# ResNet against the characteristics at growing depths (Euler: order 1, midpoint: order 2).

# %%
from solver.check.compare_run import compare_run

report = compare_run(comm, run)
midpoint = report["resnet"]["midpoint"]
say(f"compare: labels agree on {100 * report['test']['label_agreement']:.1f}% of the test points, "
    f"max logit difference {report['test']['max_logit_difference']:.3f}")
say("ResNet (midpoint blocks) against the characteristics: "
    + ", ".join(f"N = {r['depth']}: {r['max_error']:.1e}" for r in midpoint))

# %% [markdown]
# ## 3. Export
#
# The learned flow as N residual blocks (eq. 17, here midpoint blocks), after the input
# scaling and before the output layer: an ONNX file anyone can run without this project.

# %%
from solver.resnet.export import export
from solver.resnet.onnx_net import load_onnx_session

depth = 16 if args.quick else 64
files = on_rank0(comm, export, run, depth, "midpoint", "onnx,npz")
onnx_file = next(f for f in files if str(f).endswith("float64.onnx"))
X_test_data = dataset.scaling.inverse(dataset.X_test)  # the test points in data coordinates
net_logits = load_onnx_session(onnx_file)(X_test_data)
say(f"exported {', '.join(Path(f).name for f in files)}")

# %% [markdown]
# ## 4. Predict with scikit-learn's interface
#
# `FlowClassifier.load` reads the run directory (config.toml and theta.npz; no pickle). Its
# predictions are the characteristics' u(0, x) = f(q(T; x)) (eq. 6), the model's own value at
# any point; training certified that the PDE agrees with them.

# %%
from sklearn.datasets import make_moons

clf = solver.FlowClassifier.load(run)
X_new, y_new = make_moons(200, noise=0.1, random_state=1)
accuracy = clf.score(X_new, y_new)
agree = float(np.mean(clf.predict(X_test_data) == net_logits.argmax(axis=1)))
say(f"FlowClassifier.load: accuracy {accuracy:.3f} on 200 new moons points; the ONNX net "
    f"({depth} blocks) gives the same label on {100 * agree:.1f}% of the test points")

# %% [markdown]
# ## 5. Pictures
#
# prediction.png (u_h(0, ·) with the data), velocity.png (the learned field on each slab),
# characteristics.png (test points carried from t = 0 to T) and loss.png, among the others the
# run wrote ([docs/pictures.md](../pictures.md)).

# %%
pictures = sorted(p.name for p in run.glob("*.png"))
say(f"pictures in {run}: {', '.join(pictures)}")
shown = ["prediction.png", "velocity.png", "characteristics.png", "loss.png"]
figure, axes = plt.subplots(2, 2, figsize=(12, 10))
for ax, name in zip(axes.flat, shown):
    ax.imshow(plt.imread(run / name))
    ax.set_axis_off()
figure.tight_layout()

result = dict(run=run, metrics=metrics, report=report, new_accuracy=accuracy, onnx_agreement=agree,
              pictures=pictures)
