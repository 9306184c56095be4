"""Section 6, millions of points: training to a target with N = 10⁶ and 10⁷ data points.

The transport formulation solves one PDE per iteration whatever N is; only the evaluation of
u_h(0, ·) at the points (a sparse matrix P, split over the ranks like the points) grows with N.
A neural ODE integrates every point. Here both train the same velocity model (eq. 2, the problem
file's width, slabs, activation, cutoff) from the same θ on the same data, to the same target
test accuracy:

- the PDE route: ``mpirun -n 2 python -m solver train`` with the problem file's L-BFGS and its
  certification, ``train.target_accuracy`` set to the target (the run ends at the first check
  that certifies it; with more training points than ``train.subsample`` it trains on that many
  first); the time to the target is its training time (set-up, data generation and
  point location off the clock, as for the peers) up to the first iteration whose test accuracy
  reaches it, and up to the first check whose characteristics reach it within the tolerance
  (certified); its wall time includes everything;
- the peer (``scripts/peer/node_peer.py``, one thread) with Adam: full batch with dopri5 + adjoint
  and with fixed-step Euler, and Euler on minibatches (what a user of a neural ODE would do with
  this much data), each with a budget of training time; "not reached" when the budget ends first.
  At N = 10⁷ the full-batch peers are not run: backpropagation through Euler's steps keeps every
  step's activations (about N · width · steps · 8 bytes · 4 arrays = 65 GB here), more than the
  machine's memory, and one dopri5-adjoint iteration took 1077 s (2026-11-29 run of this
  section), nine times the budget, which it cannot stop inside an iteration.

Peak memory: each process's peak resident set (the PDE's largest rank).
"""

from __future__ import annotations

import json

from scripts.bench_lib import peer
from scripts.bench_lib.common import PROBLEMS, Bench, write_config
from scripts.bench_lib.learning import train_pde
from solver.config import load_config
from solver.learn.train import load_dataset

SECTION = "6 millions"

# name: (problem file, data points, target test accuracy, changes to the problem file)
CASES = {
    "moons 10⁶": ("moons.toml", 10**6, 0.98, {}),
    "circles 10⁶": ("circles3d.toml", 10**6, 0.98, {}),
    "moons 10⁷": ("moons.toml", 10**7, 0.98, {}),
}
QUICK_CASES = {"moons 2·10³": ("moons.toml", 2000, 0.9, {"mesh": {"cells": 8}, "train": {"iterations": 5}})}
BUDGET = 120.0  # seconds of training time for each peer
QUICK_BUDGET = 2.0
ADAM_LR = 0.05
BATCH = 1024
FULL_BATCH_LIMIT = 2 * 10**6  # training points above which the full-batch peers are not run


# The minibatch peer's evaluations (off the clock): every EVALUATE_EVERY steps on a fixed random
# EVALUATE_SUBSET test points, a subset at the target confirmed on the whole test set
# (node_peer.py's evaluate_subset), so that their cost does not grow with N and the time to the
# target is resolved to EVALUATE_EVERY steps at any N.
EVALUATE_EVERY, EVALUATE_SUBSET = 50, 20_000


def peers(n_train: int) -> dict[str, dict]:
    """The peer variants run at this N: name -> spec keys."""
    variants = {"dopri5-adjoint": dict(method="dopri5-adjoint"),
                "euler": dict(method="euler"),
                f"euler, batch {BATCH}": dict(method="euler", batch_size=BATCH, evaluate_every=EVALUATE_EVERY,
                                              evaluate_subset=EVALUATE_SUBSET)}
    if n_train > FULL_BATCH_LIMIT:
        del variants["euler"], variants["dopri5-adjoint"]
    return variants


def train_peers(bench: Bench, python, name: str, config, dataset, target: float) -> dict:
    """Every peer variant, Adam, from the training run's θ, until the target or the budget."""
    budget = QUICK_BUDGET if bench.quick else BUDGET
    return dict(peer.adam_to_target(bench, python, SECTION, name, f"millions-{name.replace(' ', '')}", config,
                                    dataset, peers(len(dataset.y_train)), ADAM_LR, target, budget))


def run(bench: Bench, peer_python) -> dict:
    """Section 6 for every case (one small one in quick mode); saved after each case."""
    cases = QUICK_CASES if bench.quick else CASES
    section = bench.results["millions"] = dict(budget=QUICK_BUDGET if bench.quick else BUDGET, lr=ADAM_LR,
                                               batch=BATCH, full_batch_limit=FULL_BATCH_LIMIT,
                                               evaluate_every=EVALUATE_EVERY, evaluate_subset=EVALUATE_SUBSET,
                                               cases={})
    for name, (source, points, target, changes) in cases.items():
        # train.target_accuracy: the run ends at the first check that certifies the target (with
        # more training points than train.subsample, after a first stage on that many), as
        # scripts/bench_hard_target.py's
        changes = {"output": {"vtx": False, "png": False, "animation": False},
                   **changes, "data": {"points": points},
                   "train": {**changes.get("train", {}), "target_accuracy": target}}
        tag = name.replace(" ", "").replace("⁶", "6").replace("⁷", "7").replace("·", "x").replace("³", "3")
        config_path = write_config(PROBLEMS / source, bench.out / "configs" / f"millions-{tag}.toml", changes)
        config = load_config(config_path)
        dataset = load_dataset(config, config.domain_object())
        pde = train_pde(bench, f"millions-{tag}", config_path, target, SECTION)
        metrics = json.loads((bench.out / pde["run"] / "metrics.json").read_text())
        case = section["cases"][name] = dict(
            source=source, config=str(config_path.relative_to(bench.out)), target=target, dim=config.dim,
            n_train=len(dataset.y_train), n_test=len(dataset.y_test),
            pde=dict(pde, certified=metrics.get("certified")))
        del case["pde"]["history"]
        bench.save()
        case["peer"] = train_peers(bench, peer_python, name, config, dataset, target)
        best = [r["time_to_target"] for r in case["peer"].values() if r["time_to_target"] is not None]
        pde_time = pde["certified_time_to_target"] or pde["time_to_target"]
        case["ratio_best_peer_to_pde"] = (min(best) / pde_time) if best and pde_time else None
        case["ratio_bound"] = None if best or not pde_time else case["peer"][next(iter(case["peer"]))]["budget"] / pde_time
        bench.progress(SECTION, name, "done")
        bench.save()
    return section

