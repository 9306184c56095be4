"""Convergence of the ResNet constructed from a plain net's flow model (sections 3-4) to the net.

    .venv/bin/python scripts/bench_plain2resnet.py            # all tables
    .venv/bin/python scripts/bench_plain2resnet.py --quick    # l up to 64, fewer points

Tables (max |ResNet(x) − plain net(x)| over the inputs, observed order log2(e_{l/2}/e_l)):
  1. random nets 4→8→8→3, hidden activation relu / leaky_relu / tanh / sigmoid, l = 4 … 256;
  2. the tanh/sigmoid flows linearized at a fixed anchor 0 instead of z_k (eq. 66);
  3. β: the exact flow map (no Euler) and the ResNet at several l, for β = 1 … 32;
  4. fitted scikit-learn MLPs: iris (4→10→10→3) and digits reduced by PCA to 8 dimensions
     (8→16→16→10), logits and probabilities, and the agreement of predicted classes;
  5. the time scaling h: "quintic" (default) vs "smooth" (C∞): errors, orders, and the
     float32 ONNX export of a net with saturated tanh units (round-off amplification).
"""

from __future__ import annotations

# mpi4py first, as everywhere in this project (before dolfinx, or libmpi.so.12 is not found),
# though nothing here uses MPI.
from mpi4py import MPI  # noqa: F401

import argparse
import time
import warnings

import numpy as np
import onnxruntime as ort

from solver.plain2resnet.resnet_export import to_onnx
from solver.plain2resnet.flow import convergence_study, discretize, flow_map, flow_model, study_order
from solver.plain2resnet.plainnet import Layer, PlainNet, random_plain_net as random_net
from solver.plain2resnet.plainnet_io import from_sklearn

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")


def format_rows(title: str, columns: dict[str, list[dict]], fit_from: int) -> str:
    """One line per l, two columns (error, order) per case, then the fitted order per case."""
    names = list(columns)
    lines = [
        title,
        f"{'l':>5} " + " ".join(f"{n:>20}" for n in names),
        f"{'':>5} " + " ".join(f"{'error':>11} {'order':>8}" for _ in names),
    ]
    for i, row in enumerate(columns[names[0]]):
        cells = []
        for n in names:
            r = columns[n][i]
            cells.append(
                f"{r['error']:11.3e} {r['order']:8.2f}"
                if r["order"] is not None
                else f"{r['error']:11.3e} {'':>8}"
            )
        lines.append(f"{row['substeps']:5d} " + " ".join(cells))
    lines.append(
        f"{'fit':>5} "
        + " ".join(
            f"{'l>=' + str(fit_from):>11} {study_order(columns[n], fit_from):8.2f}" for n in names
        )
    )
    return "\n".join(lines)


def sklearn_nets(quick: bool) -> list[tuple[str, PlainNet, np.ndarray]]:
    """Fitted MLPClassifiers on iris and PCA-8 digits; returns (name, net, test inputs)."""
    from sklearn.datasets import load_digits, load_iris
    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cases = []
    for data_name, loader, hidden, reduce in (
        ("iris", load_iris, (10, 10), None),
        ("digits-pca8", load_digits, (16, 16), 8),
    ):
        x, y = loader(return_X_y=True)
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=0.3, random_state=0, stratify=y
        )
        steps = [StandardScaler()] + (
            [PCA(reduce, random_state=0), StandardScaler()] if reduce else []
        )
        features = make_pipeline(*steps).fit(x_train)
        for activation in ("relu", "tanh", "logistic"):
            model = MLPClassifier(
                hidden, activation=activation, max_iter=300 if quick else 2000, random_state=0
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(features.transform(x_train), y_train)
            z_test = features.transform(x_test)
            name = f"{data_name}/{activation} (test acc {model.score(z_test, y_test):.2f})"
            cases.append((name, from_sklearn(model), z_test))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="l up to 64 and 200 points")
    parser.add_argument(
        "--beta", type=float, default=10.0, help="β for tables 1, 2, 4 (default 10)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    levels = [4, 8, 16, 32, 64] if args.quick else [4, 8, 16, 32, 64, 128, 256]
    x = np.random.default_rng(1).standard_normal((200 if args.quick else 1000, 4))
    fit_from = 16 if args.quick else 32

    columns = {a: convergence_study(random_net(a), x, levels, args.beta) for a in ACTIVATIONS}
    print(
        format_rows(
            f"1. random nets 4→8→8→3, x ~ N(0, I), β = {args.beta:g}, anchor z_k (eq. 66); max |ResNet − plain|",
            columns,
            fit_from,
        )
    )

    columns = {
        f"{a}/anchor 0": convergence_study(random_net(a), x, levels, args.beta, anchor="zero")
        for a in ("tanh", "sigmoid")
    }
    print(
        "\n"
        + format_rows(
            "2. tanh/sigmoid linearized at the fixed anchor Z = 0 (constant weights): no convergence",
            columns,
            fit_from,
        )
    )

    net = random_net("tanh", rank=3)
    flow = flow_model(net)
    reference = net.forward(x)
    betas = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    lines = [
        f"\n3. β effect, tanh random net 4→8→8→3 whose 8→8 layer has rank 3 (d = {flow.dim}): max |· − plain|",
        "   (only a layer whose kernel meets the data and whose range misses some output coordinate feels β)",
    ]
    lines.append(
        f"{'β':>5} {'e^-β':>10} {'exact flow':>11} "
        + " ".join(f"{'l=' + str(l):>10}" for l in levels)
    )
    for beta in betas:
        exact = np.max(np.abs(flow_map(flow, beta, x) - reference))
        errors = [np.max(np.abs(discretize(flow, l, beta).forward(x) - reference)) for l in levels]
        lines.append(
            f"{beta:5g} {np.exp(-beta):10.2e} {exact:11.3e} "
            + " ".join(f"{e:10.2e}" for e in errors)
        )
    print("\n".join(lines))

    cases = sklearn_nets(args.quick)
    logits = {name: convergence_study(net, z, levels, args.beta) for name, net, z in cases}
    print(
        "\n"
        + format_rows(
            f"4. fitted scikit-learn MLPClassifier, test inputs, β = {args.beta:g}; max |ResNet logits − MLP logits|",
            logits,
            fit_from,
        )
    )
    lines = [
        "\n   at the largest l: max |MLP logits|, max |probabilities difference|, predicted classes equal"
    ]
    for name, net, z in cases:
        resnet = discretize(flow_model(net), levels[-1], args.beta)
        p, q = net.predict(z), resnet.predict(z)
        scale = np.max(np.abs(net.forward(z)))
        agree = np.mean(p.argmax(1) == q.argmax(1)) * 100
        lines.append(
            f"   {name:>36}: {scale:8.2f}, {np.max(np.abs(p - q)):.3e}, {agree:.1f}% of {len(z)}"
        )
    print("\n".join(lines))

    columns = {
        f"{a}/{h}": convergence_study(random_net(a), x, levels, args.beta, scaling=h)
        for a in ACTIVATIONS
        for h in ("quintic", "smooth")
    }
    lines = [
        f"\n5. time scaling h, random nets of table 1: "
        f"max error at l = {levels[-1]} and fitted order (l >= {fit_from})"
    ]
    for a in ACTIVATIONS:
        cells = [
            f"{h} {columns[f'{a}/{h}'][-1]['error']:.3e} ({study_order(columns[f'{a}/{h}'], fit_from):.2f})"
            for h in ("quintic", "smooth")
        ]
        lines.append(f"   {a:>10}: " + ",  ".join(cells))
    lines.append(
        "   saturated tanh net (weights × 50), |float32 ONNX − float64 numpy| / max|y| (onnxruntime):"
    )
    saturated = PlainNet(
        tuple(Layer(50.0 * l.weight, l.bias, l.activation) for l in random_net("tanh").layers),
        "softmax",
    )
    for h in ("quintic", "smooth"):
        cells = []
        for l in levels[-3:]:
            resnet = discretize(flow_model(saturated), l, args.beta, scaling=h)
            y = resnet.forward(x)
            session = ort.InferenceSession(
                to_onnx(resnet, np.float32).model().SerializeToString(),
                providers=["CPUExecutionProvider"],
            )
            y32 = session.run(None, {"x": x.astype(np.float32)})[0]
            cells.append(f"l={l}: {np.max(np.abs(y32 - y)) / np.max(np.abs(y)):.1e}")
        lines.append(f"   {h:>10}: " + ", ".join(cells))
    print("\n".join(lines))
    print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
