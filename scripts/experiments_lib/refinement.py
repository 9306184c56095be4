"""Section 3 (the paper's section 5, item 3): ResNets as refinements of plain nets.

Plain nets trained by scikit-learn (MLPClassifier) on iris, digits reduced to 8 dimensions by
PCA, and two moons are turned into ResNets by the project's ``plain2resnet`` (the flow model of
sections 3-4, l Euler substeps per layer): the logit error and the agreement of the predicted
classes on the test inputs against l, and the ResNet's depth (blocks) against the plain net's.
"""

from __future__ import annotations

import warnings

import numpy as np

from solver.plain2resnet.flow import add_orders, discretize, flow_model
from solver.plain2resnet.plainnet_io import from_sklearn

BETA = 10.0  # β of eq. 21, as scripts/bench_plain2resnet.py
SUBSTEPS = (2, 4, 8, 16, 32, 64)
QUICK_SUBSTEPS = (2, 4)


def datasets(quick: bool):
    """(name, features of the training split, labels, features of the test split, labels, hidden)."""
    from sklearn.datasets import load_digits, load_iris, make_moons
    from sklearn.decomposition import PCA
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cases = [("iris", *load_iris(return_X_y=True), (10, 10), None)]
    if not quick:
        cases += [("digits-pca8", *load_digits(return_X_y=True), (16, 16), 8),
                  ("moons", *make_moons(500, noise=0.1, random_state=0), (8, 8), None)]
    for name, x, y, hidden, reduce in cases:
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
        steps = [StandardScaler()] + ([PCA(reduce, random_state=0), StandardScaler()] if reduce else [])
        features = make_pipeline(*steps).fit(x_train)
        yield name, features.transform(x_train), y_train, features.transform(x_test), y_test, hidden


def classes(logits: np.ndarray) -> np.ndarray:
    """Predicted classes from the logits: argmax (softmax), or logit > 0 for a binary net's
    single column (sigmoid)."""
    return (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(axis=1)


def study(net, x: np.ndarray, levels: list[int]) -> list[dict]:
    """Per l: the blocks, max |ResNet logits − plain logits| with its observed order, and the
    agreement of the predicted classes. (``flow.convergence_study`` measures the error alone;
    this takes both from one forward pass per l.)"""
    flow, reference = flow_model(net), net.forward(x)
    plain, rows = classes(reference), []
    for l in levels:
        resnet = discretize(flow, l, BETA)
        logits = resnet.forward(x)
        error = float(np.max(np.abs(logits - reference)))
        rows.append(dict(substeps=l, blocks=resnet.num_blocks, error=error,
                         agreement=float(np.mean(classes(logits) == plain))))
    add_orders(rows)
    return rows


def run(quick: bool) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    levels = list(QUICK_SUBSTEPS if quick else SUBSTEPS)
    results = {}
    for name, x_train, y_train, x_test, y_test, hidden in datasets(quick):
        for activation in ("relu", "tanh"):
            model = MLPClassifier(hidden, activation=activation, max_iter=200 if quick else 2000, random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x_train, y_train)
            net = from_sklearn(model)
            rows = study(net, x_test, levels)
            results[f"{name}/{activation}"] = dict(
                dataset=name, activation=activation, plain_layers=len(net.layers),
                plain_widths=list(net.widths), test_accuracy=float(model.score(x_test, y_test)),
                embedding_dimension=int(flow_model(net).dim), beta=BETA, rows=rows)
    return results
