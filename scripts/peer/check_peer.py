"""A quick check of the neural-ODE peer on two moons (runs under the peer venv, ~1 min on 1 core).

    py="$(scripts/peer/setup.sh | tail -n 1)"
    "$py" scripts/peer/check_peer.py [--iterations 100]

1. The gradient of ``dopri5-adjoint`` (continuous adjoint) against backpropagation through the
   same dopri5 solve, at tight tolerances: they must agree to ~1e-5 relative.
2. Training through the command line (``node_peer.py JOB --out RESULT``) with Adam, once with
   dopri5-adjoint and once with Euler: test accuracy and time per iteration.

The job: 200 training and 200 test points of two interleaved half circles + noise, scaled into
[-0.8, 0.8]², box [-1, 1]², width 8, 4 slabs, T = 1, tanh, K = 2 (174 parameters).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import node_peer

HERE = Path(__file__).resolve().parent
SPEC = {
    "dim": 2, "width": 8, "slabs": 4, "T": 1.0, "activation": "tanh", "classes": 2,
    "domain": {"kind": "box", "lower": [-1.0, -1.0], "upper": [1.0, 1.0]},
    "optimizer": "adam", "lr": 0.05, "seed": 0, "threads": 1, "mode": "train",
    "target_accuracy": 0.98,
}


def two_moons(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n points of two interleaved half circles + Gaussian noise, in [-0.8, 0.8]²; labels 0/1."""
    y = np.arange(n) % 2
    angle = rng.uniform(0.0, np.pi, n)
    x = np.where(y == 0, np.cos(angle), 1.0 - np.cos(angle))
    z = np.where(y == 0, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, z], axis=1) + rng.normal(0.0, noise, (n, 2))
    lo, hi = points.min(axis=0), points.max(axis=0)
    return -0.8 + 1.6 * (points - lo) / (hi - lo), y


def gradient_check(X: np.ndarray, y: np.ndarray, rtol: float, atol: float) -> float:
    """|g_adjoint − g_backprop| / |g_backprop| of the training loss at the initial parameters."""
    arrays = {"X_train": X, "y_train": y}
    grads = {}
    for method in ("dopri5-adjoint", "dopri5"):
        spec = dict(SPEC, method=method, rtol=rtol, atol=atol)
        model = node_peer.FlowClassifier(spec, node_peer.initial_parameters(spec, arrays))
        objective = node_peer.Objective(model, torch.as_tensor(X), torch.as_tensor(y), 0.0)
        objective()
        grads[method] = torch.cat([p.grad.ravel() for p in model.parameters()])
    difference = grads["dopri5-adjoint"] - grads["dopri5"]
    return float(difference.norm() / grads["dopri5"].norm())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    X_train, y_train = two_moons(200, 0.08, rng)
    X_test, y_test = two_moons(200, 0.08, rng)

    for rtol, atol in ((1e-10, 1e-12), (1e-5, 1e-7)):
        error = gradient_check(X_train, y_train, rtol, atol)
        print(f"gradient, adjoint vs backprop (dopri5, rtol={rtol:g}, atol={atol:g}): "
              f"relative difference {error:.2e}")

    runs = {"dopri5-adjoint": {}, "euler": {"euler_steps": 40}}
    with tempfile.TemporaryDirectory() as tmp:
        for method, extra in runs.items():
            spec = dict(SPEC, method=method, iterations=args.iterations, **extra)
            job, out = Path(tmp) / f"{method}.npz", Path(tmp) / f"{method}.json"
            np.savez(job, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
                     spec=np.array(json.dumps(spec)))
            command = [sys.executable, str(HERE / "node_peer.py"), str(job), "--out", str(out)]
            subprocess.run(command, check=True)
            r = json.loads(out.read_text())
            per_iteration = np.diff([0.0] + [h["time"] for h in r["history"]])
            reached = r["time_to_target"]
            reached = "not reached" if reached is None else f"{reached:.2f} s"
            print(f"{method:>15}: test {r['test_accuracy']:.3f}  train {r['train_accuracy']:.3f}  "
                  f"loss {r['final_loss']:.4f}  {r['iterations']} its in {r['train_time']:.2f} s  "
                  f"median {1e3 * statistics.median(per_iteration):.1f} ms/it  "
                  f"test {r['target_accuracy']} at it {r['iteration_at_target']} ({reached})  "
                  f"nfe fwd/bwd {r['nfe']}/{r['nfe_backward']}  params {r['params']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
