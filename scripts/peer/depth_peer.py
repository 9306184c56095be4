"""Plain nets against ResNets of the same depth, trained alike (issue #13, section 4).

    "$py" scripts/peer/depth_peer.py JOB.npz --out RESULT.json     # py: the peer venv's python

Runs under the peer venv (torch; no ``solver`` import, as node_peer.py). JOB.npz holds
``X_train`` (n, d), ``y_train`` (n,) int, ``X_test``, ``y_test`` and ``spec``, a 0-d array with a
JSON string: depths (list of D), width w, iterations, lr (Adam), seeds (list), activation (tanh
or relu), record_every, threads.

Both nets lift the input by a linear layer to width w, apply D layers of width w and read out by
a linear layer to the K classes:

    plain   x_k = a(W_k x_{k-1} + b_k)                    k = 1 … D
    ResNet  x_k = x_{k-1} + h W2_k a(W1_k x_{k-1} + b1_k),  h = 1/D (eq. 17 with T = 1)

torch's default initialization (uniform, variance 1/(3 fan_in)) for every linear layer of both,
float64, full-batch Adam on the mean cross-entropy. Recorded every ``record_every`` iterations:
the loss and the gradient norm of the first of the D layers (W_1; the ResNet's W1_1); at the
end the train and test accuracy.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

DTYPE = torch.float64
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


class Plain(torch.nn.Module):
    def __init__(self, d: int, w: int, K: int, depth: int, act):
        super().__init__()
        self.lift, self.out, self.act = torch.nn.Linear(d, w), torch.nn.Linear(w, K), act
        self.layers = torch.nn.ModuleList(torch.nn.Linear(w, w) for _ in range(depth))

    def forward(self, x):
        x = self.lift(x)
        for layer in self.layers:
            x = self.act(layer(x))
        return self.out(x)

    def first(self):
        return self.layers[0].weight


class ResNet(torch.nn.Module):
    def __init__(self, d: int, w: int, K: int, depth: int, act):
        super().__init__()
        self.lift, self.out, self.act, self.h = torch.nn.Linear(d, w), torch.nn.Linear(w, K), act, 1.0 / depth
        self.inner = torch.nn.ModuleList(torch.nn.Linear(w, w) for _ in range(depth))
        self.outer = torch.nn.ModuleList(torch.nn.Linear(w, w, bias=False) for _ in range(depth))

    def forward(self, x):
        x = self.lift(x)
        for inner, outer in zip(self.inner, self.outer):
            x = x + self.h * outer(self.act(inner(x)))
        return self.out(x)

    def first(self):
        return self.inner[0].weight


def train(kind: str, data: dict, spec: dict, depth: int, seed: int) -> dict:
    torch.manual_seed(seed)
    X, y = data["X_train"], data["y_train"]
    K = int(max(y.max(), data["y_test"].max())) + 1
    cls = Plain if kind == "plain" else ResNet
    net = cls(X.shape[1], spec["width"], K, depth, ACTIVATIONS[spec["activation"]]).to(DTYPE)
    optimizer = torch.optim.Adam(net.parameters(), lr=spec["lr"])
    loss_fn = torch.nn.CrossEntropyLoss()
    losses, grads, started = [], [], time.perf_counter()
    for it in range(spec["iterations"] + 1):
        optimizer.zero_grad()
        loss = loss_fn(net(X), y)
        loss.backward()
        if it % spec["record_every"] == 0 or it == spec["iterations"]:
            losses.append([it, loss.item()])
            grads.append([it, float(net.first().grad.norm())])
        if it < spec["iterations"]:
            optimizer.step()
    with torch.no_grad():
        accuracy = {split: float((net(data[f"X_{split}"]).argmax(1) == data[f"y_{split}"]).double().mean())
                    for split in ("train", "test")}
    return dict(kind=kind, depth=depth, seed=seed, parameters=sum(p.numel() for p in net.parameters()),
                loss=losses, first_layer_gradient=grads, train_accuracy=accuracy["train"],
                test_accuracy=accuracy["test"], seconds=time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    job = np.load(args.job)
    spec = json.loads(str(job["spec"]))
    torch.set_num_threads(int(spec.get("threads", 1)))
    data = {k: torch.as_tensor(job[k], dtype=DTYPE if k.startswith("X") else torch.long)
            for k in ("X_train", "y_train", "X_test", "y_test")}
    runs = [train(kind, data, spec, depth, seed)
            for depth in spec["depths"] for kind in ("plain", "resnet") for seed in spec["seeds"]]
    with open(args.out, "w") as f:
        json.dump(dict(spec=spec, torch=torch.__version__, runs=runs), f)


if __name__ == "__main__":
    main()
