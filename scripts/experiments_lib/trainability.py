"""Section 4 (the paper's section 5, item 4): ResNets are easier to train than plain nets of the
same depth. Plain nets and ResNets of depth D and width w, the same data (the projects' spirals
and peaks, in Ω's coordinates as training sees them), optimizer (Adam), budget and seeds, in
torch (the peer venv: ``scripts/peer/depth_peer.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scripts.experiments_lib.common import BackgroundPeer, problem_config, spread
from scripts.harness import ROOT
from solver.learn.train import load_dataset

SCRIPT = ROOT / "scripts" / "peer" / "depth_peer.py"
FULL = dict(depths=[4, 16, 64], width=16, iterations=250, lr=0.01, seeds=[0, 1],
            activation="tanh", record_every=10, threads=1)
QUICK = dict(FULL, depths=[4, 16], iterations=10, seeds=[0], record_every=5)
DATASETS = ("spirals", "peaks")


class Peer:
    """Section 4 in the background: the jobs are written here (in the calling thread: data sets
    and scikit-learn load there), then one thread runs the peer on them one after the other
    while the caller trains the FE fields; ``results()`` waits and gathers."""

    def __init__(self, out: Path, quick: bool):
        self.spec = QUICK if quick else FULL
        self.peer = BackgroundPeer(SCRIPT, "section 4")
        for name in DATASETS[:1] if quick else DATASETS:
            config = problem_config(name, {})
            ds = load_dataset(config, config.domain_object())
            job, result = out / "work" / f"s4-{name}.npz", out / "work" / f"s4-{name}.json"
            job.parent.mkdir(parents=True, exist_ok=True)
            np.savez(job, X_train=ds.X_train, y_train=ds.y_train, X_test=ds.X_test, y_test=ds.y_test,
                     spec=json.dumps(self.spec))
            self.peer.add(name, job, result)
        self.peer.start()

    def results(self) -> dict:
        results = {}
        for name, output in self.peer.outputs():
            runs = output["runs"]
            for depth in self.spec["depths"]:
                for kind in ("plain", "resnet"):
                    pick = [r for r in runs if r["depth"] == depth and r["kind"] == kind]
                    results[f"{name}/{kind}/D={depth}"] = dict(
                        dataset=name, kind=kind, depth=depth, width=self.spec["width"],
                        parameters=pick[0]["parameters"], runs=pick,
                        test_accuracy=spread([r["test_accuracy"] for r in pick]),
                        final_loss=spread([r["loss"][-1][1] for r in pick]),
                        first_gradient_at_start=spread([r["first_layer_gradient"][0][1] for r in pick]),
                    )
        return dict(spec=self.spec, results=results)


def curves_figure(section: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = section["results"]
    datasets = sorted({r["dataset"] for r in results.values()})
    fig, axes = plt.subplots(2, len(datasets), figsize=(4.5 * len(datasets), 6), squeeze=False)
    for col, name in enumerate(datasets):
        for key, r in results.items():
            if r["dataset"] != name:
                continue
            style = "-" if r["kind"] == "resnet" else "--"
            for i, run in enumerate(r["runs"]):
                label = f"{r['kind']} D={r['depth']}" if i == 0 else None
                color = {4: "C0", 16: "C1", 64: "C2"}.get(r["depth"], "C3")
                it, loss = np.array(run["loss"]).T
                axes[0, col].plot(it, loss, style, color=color, lw=1, label=label)
                it, g = np.array(run["first_layer_gradient"]).T
                axes[1, col].semilogy(it, g, style, color=color, lw=1, label=label)
        axes[0, col].set_title(f"{name}: training loss (dashed: plain)", fontsize=9)
        axes[1, col].set_title(f"{name}: |∂loss/∂W_1| (first layer)", fontsize=9)
        axes[1, col].set_xlabel("Adam iteration")
        axes[0, col].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
