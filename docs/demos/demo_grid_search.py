# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # FlowClassifier in a GridSearchCV
#
# `FlowClassifier` is the flow model as a scikit-learn classifier: fit, predict,
# predict_proba, score, and every key of a problem file as a parameter (`cells` is
# `mesh.cells`, `kinetic` is `train.kinetic`, ...). So scikit-learn's model selection works
# as with any other classifier. This demo searches two of them on two interleaving moons:
#
# - `kinetic`, the weight of ∫∫|v|² in the objective: it keeps the learned field small, so
#   that fewer time steps are needed and the mesh resolves the flow;
# - `width`, the hidden width of the velocity model (eq. 2).
#
# Run it with `python docs/demos/demo_grid_search.py [--quick]`, or under `mpirun -n 2`: every
# rank runs the same search with the same data, each fit is one collective training, and every
# rank ends with the same scores. `make demo-pages` renders it as a page with its output and
# figure ([docs/python-api.md](../python-api.md#demos)).

# %%
from mpi4py import MPI

import argparse
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from solver import FlowClassifier, UncertifiedWarning

# Known options only: a notebook kernel has arguments of its own.
parser = argparse.ArgumentParser(description="FlowClassifier in a GridSearchCV")
parser.add_argument("--quick", action="store_true", help="a smaller grid and problem (for the tests)")
args, _ = parser.parse_known_args()
comm = MPI.COMM_WORLD
say = print if comm.rank == 0 else (lambda *a, **k: None)

X, y = make_moons(200 if args.quick else 500, noise=0.15, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)

# %% [markdown]
# ## The estimator and the grid
#
# A pipeline as for any classifier: the scaler is not needed (fit scales X into Ω itself, one
# factor for all axes), but it shows that FlowClassifier is an ordinary step. The mesh and the
# number of L-BFGS iterations are fixed; training refines the mesh where the PDE and the
# characteristics disagree.

# %%
flow = FlowClassifier(cells=12 if args.quick else 24, iterations=10 if args.quick else 40)
pipe = make_pipeline(StandardScaler(), flow)
grid = {"flowclassifier__kinetic": [0.0, 0.05], "flowclassifier__width": [4] if args.quick else [4, 8]}
search = GridSearchCV(pipe, grid, cv=2 if args.quick else 3)
with warnings.catch_warnings():
    # A fit whose PDE and characteristics disagree beyond the tolerance says so; its
    # predictions are the characteristics' all the same.
    warnings.simplefilter("ignore", UncertifiedWarning)
    search.fit(X_train, y_train)

# %% [markdown]
# ## The results
#
# The cross-validated accuracy of each pair, and the best pipeline (refitted on all the
# training points) on the held-out test points, with its decision boundary.

# %%
results = search.cv_results_
for params, mean, std in zip(results["params"], results["mean_test_score"], results["std_test_score"]):
    say(f"  {params}: accuracy {mean:.3f} ± {std:.3f}")
best = search.best_estimator_[-1]
test_accuracy = search.score(X_test, y_test)
say(f"best {search.best_params_}: test accuracy {test_accuracy:.3f}; "
    f"certified: {best.certified_} (max logit difference "
    f"{max(best.metrics_['check'][s]['max_logit_difference'] for s in ('train', 'test')):.3f} "
    f"on the {best.resolution_['cells']} cells, DG{best.resolution_['degree']} mesh)")

# %%
n = 30 if args.quick else 60  # the training points' box: inside Ω after the scaling fit found
u, v = np.meshgrid(*(np.linspace(X_train[:, j].min(), X_train[:, j].max(), n) for j in (0, 1)))
probability = search.predict_proba(np.column_stack([u.ravel(), v.ravel()]))[:, 1].reshape(u.shape)
figure, ax = plt.subplots(figsize=(6, 4.5))
ax.contourf(u, v, probability, levels=20, cmap="RdBu_r", alpha=0.7)
ax.scatter(X_test[:, 0], X_test[:, 1], c=y_test, cmap="RdBu_r", edgecolor="k", s=16)
ax.set_title(f"best pipeline: P(class 1), test points (accuracy {test_accuracy:.3f})")
figure.tight_layout()

result = dict(search=search, test_accuracy=test_accuracy, scores=np.asarray(results["mean_test_score"]))
