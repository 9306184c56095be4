# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # A plain scikit-learn MLP turned into a ResNet
#
# Sections 3 and 4 of Li & Shi: every layer x ↦ a(W x + b) of a plain net is the time-5 map of
# a flow (rotate, stretch, rotate, shift, then the activation's own flow), so the whole net is
# the flow of a piecewise-constant velocity field; re-discretizing that flow with l Euler
# substeps per unit of time gives a ResNet, which converges to the plain net as l grows
# (order 1).
#
# This demo trains scikit-learn's MLPClassifier on two moons, turns it into a ResNet
# (`solver.plain2resnet`), measures the ResNet against the plain net for growing l, and writes
# it as ONNX. The command line does the same for a net saved as npz or ONNX:
# `python -m solver plain2resnet NET --substeps 256 --out resnet.onnx`.
#
# Run it with `python docs/demos/demo_plain2resnet.py [--quick] [--out DIR]`. It is numpy and
# onnxruntime only: no mesh, no MPI (rank 0 writes the file). `make demo-pages` renders it as a
# page with its output and figure ([docs/python-api.md](../python-api.md#demos)).

# %%
from mpi4py import MPI

import argparse
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

# Known options only: a notebook kernel has arguments of its own.
parser = argparse.ArgumentParser(description="a plain scikit-learn MLP turned into a ResNet")
parser.add_argument("--quick", action="store_true", help="fewer substeps (for the tests)")
parser.add_argument("--out", type=Path, default=None, help="where the ONNX file goes (default: a temporary directory)")
args, _ = parser.parse_known_args()
comm = MPI.COMM_WORLD
say = print if comm.rank == 0 else (lambda *a, **k: None)

# %% [markdown]
# ## The plain net
#
# One hidden layer of 8 tanh units, fitted by L-BFGS with an L2 penalty (alpha = 1) that keeps
# the weights small (|W| < 4 here): the flow's velocity is of the weights' size, and the Euler
# substeps must resolve it. MLPClassifier's output for two classes is the logistic function of
# one logit.

# %%
from sklearn.datasets import make_moons
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

X, y = make_moons(300, noise=0.1, random_state=0)
mlp = MLPClassifier((8,), activation="tanh", solver="lbfgs", alpha=1.0, max_iter=500, random_state=0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    mlp.fit(X, y)
say(f"MLPClassifier (2 → 8 → 1, tanh): training accuracy {mlp.score(X, y):.3f}")

# %% [markdown]
# ## Its flow model
#
# `from_sklearn` reads the fitted weights (no pickle); the `PlainNet` computes exactly what
# scikit-learn computes.

# %%
from solver.plain2resnet.flow import convergence_study, plain_to_resnet, study_order
from solver.plain2resnet.plainnet_io import from_sklearn

net = from_sklearn(mlp)
same = np.max(np.abs(net.predict(X)[:, 0] - mlp.predict_proba(X)[:, 1]))
say(f"the PlainNet against predict_proba: max difference {same:.1e}")

# %% [markdown]
# ## The ResNet, for growing l
#
# The state lives in the ambient dimension d = max layer width (inputs padded with zeros);
# β = 10 sets how far the stretch flow compresses the directions a layer drops (e^{-β}). The
# error against the plain net should halve when l doubles.

# %%
substeps = [16, 32, 64] if args.quick else [32, 64, 128, 256, 512]
rows = convergence_study(net, X, substeps, beta=10.0)
for row in rows:
    order = "" if row["order"] is None else f"  order {row['order']:.2f}"
    say(f"  l = {row['substeps']:4d}: {row['blocks']:5d} blocks, max |ResNet − plain net| {row['error']:.2e}{order}")
say(f"fitted order {study_order(rows):.2f}")
ls = np.array([row["substeps"] for row in rows], dtype=float)
errors = np.array([row["error"] for row in rows])
figure, ax = plt.subplots(figsize=(5, 4))
ax.loglog(ls, errors, "o-", label="max |ResNet − plain net|")
ax.loglog(ls, errors[0] * ls[0] / ls, "k--", label="1 / l (order 1)")
ax.set_xlabel("Euler substeps per unit time, l")
ax.set_xticks(ls, [f"{v:g}" for v in ls])
ax.tick_params(which="minor", labelbottom=False)
ax.legend()
figure.tight_layout()

# %% [markdown]
# ## Export
#
# The finest ResNet as ONNX (float64), run with onnxruntime: it gives the plain net's labels.

# %%
import onnxruntime

from solver.parallel import on_rank0
from solver.plain2resnet.resnet_export import save_onnx

resnet = plain_to_resnet(net, substeps[-1], 10.0)
out = args.out or Path(comm.bcast(tempfile.mkdtemp(prefix="demo-plain2resnet-") if comm.rank == 0 else None))
path = on_rank0(comm, save_onnx, resnet, out / "moons-mlp-resnet.onnx", np.float64)
session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
outputs = session.run(None, {session.get_inputs()[0].name: X})
probability = outputs[-1][:, 0]
agree = float(np.mean((probability > 0.5) == mlp.predict(X)))
say(f"wrote {path}: its labels agree with the MLP's on {100 * agree:.1f}% of the points")

result = dict(rows=rows, order=study_order(rows), agreement=agree, path=path)
