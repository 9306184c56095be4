"""The neural-ODE peer with dropout and with Gaussian noise injection (issue #14, item 5).

    "$py" scripts/peer/regularization_peer.py JOB.npz --out RESULT.json   # py: the peer venv's python

Runs under the peer venv (torch; no ``solver`` import, as node_peer.py). JOB.npz holds
``X_train``, ``y_train``, ``X_test``, ``y_test`` (as for node_peer.py) and ``spec``, a 0-d array
with a JSON string: ``base``, a node_peer.py spec (the same velocity model as the FE run: dim,
width, slabs, T, activation, classes, domain; method "euler" with euler_steps; Adam), ``seeds``
(list) and ``variants``, a list of {"dropout": p} or {"noise": ε} merged into the base spec.

Every variant is trained for every seed by ``node_peer.run`` (one process for all of them: torch
starts once). RESULT.json: {"runs": [{variant, seed, train_accuracy, test_accuracy,
test_accuracy_sample_mean (noise only), seconds_per_iteration}, ...], "torch": version}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import node_peer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with np.load(args.job, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    spec = json.loads(str(arrays.pop("spec")[()]))
    runs = []
    for variant in spec["variants"]:
        for seed in spec["seeds"]:
            result = node_peer.run(dict(spec["base"], **variant, seed=seed), arrays)
            runs.append(dict(
                variant=variant, seed=seed, train_accuracy=result["train_accuracy"],
                test_accuracy=result["test_accuracy"],
                test_accuracy_sample_mean=result.get("test_accuracy_sample_mean"),
                train_accuracy_sample_mean=result.get("train_accuracy_sample_mean"),
                final_loss=result["final_loss"], parameters=result["params"]["total"],
                seconds_per_iteration=result["train_time"] / result["iterations"]))
    args.out.write_text(json.dumps(dict(spec=spec, torch=torch.__version__, runs=runs), indent=1) + "\n")


if __name__ == "__main__":
    main()
