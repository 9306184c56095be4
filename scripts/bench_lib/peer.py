"""The neural-ODE peer (``scripts/peer/node_peer.py``, torch + torchdiffeq in its own venv).

A job is the same velocity model as a problem file's (eq. 2: width, slabs, T, activation, the
cutoff of the same domain), on the same data in Ω coordinates, started from the same θ as a
training run (``VelocityModel.init(train.seed, field.scale)``); the peer draws its own output
layer unless one is given. See node_peer.py's docstring for the job and result format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scripts.bench_lib.common import ROOT, Bench
from scripts.harness import peer_python
from solver.config import Config
from solver.learn.train import velocity_model

NODE_PEER = ROOT / "scripts" / "peer" / "node_peer.py"
EULER_STEPS_PER_SLAB = 8


def ensure_peer(bench: Bench) -> Path:
    """The peer venv's python (``scripts.harness.peer_python``), setup.sh's messages in
    ``logs/peer-setup.log``."""
    return peer_python(bench.out / "logs" / "peer-setup.log")


def domain_spec(config: Config) -> dict:
    """The peer's domain description of Ω (a disk is its 2D ball)."""
    d = config.domain
    if d.kind == "box":
        return {"kind": "box", "lower": list(d.lower), "upper": list(d.upper)}
    return {"kind": "ball", "center": list(d.center), "radius": d.radius}


def model_spec(config: Config, classes: int, method: str) -> dict:
    """The spec keys that fix the model: the problem file's velocity and output size, a method."""
    f = config.field
    spec = dict(dim=config.dim, width=f.width, slabs=f.slabs, T=f.T, activation=f.activation,
                classes=classes, domain=domain_spec(config), method=method, threads=1,
                weight_decay=config.train.weight_decay)
    if method == "euler":
        spec["euler_steps"] = EULER_STEPS_PER_SLAB * f.slabs
    return spec


def initial_theta(config: Config, theta: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """θ (a training run's start unless given) as the peer's stacked W1, b1, W2, b2 arrays."""
    model = velocity_model(config, config.domain_object())
    if theta is None:
        theta = model.init(config.train.seed, config.field.scale)
    nodes = model.unpack(np.asarray(theta))
    return {name: np.stack([getattr(p, name) for p in nodes]) for name in ("W1", "b1", "W2", "b2")}


def run_job(bench: Bench, python: Path, name: str, spec: dict, arrays: dict[str, np.ndarray]) -> dict:
    """Write the job ``work/<name>.npz``, run the peer on it, return its result (``work/<name>.json``)
    with the process's peak resident memory added (``peak_rss_bytes``).

    The peer's torch and torchdiffeq versions go into the results (``peer_versions``).
    """
    job, path = bench.out / "work" / f"{name}.npz", bench.out / "work" / f"{name}.json"
    np.savez(job, spec=np.array(json.dumps(spec)), **arrays)
    process = bench.run([python, NODE_PEER, job, "--out", path], f"peer-{name}")
    job.unlink()  # the data are reproducible; keep the report directory small
    result = dict(json.loads(path.read_text()), peak_rss_bytes=process.peak_rss)
    bench.results["peer_versions"] = dict(torch=result["torch"], torchdiffeq=result["torchdiffeq"])
    return result


def adam_to_target(bench: Bench, python: Path, section: str, name: str, job: str, config: Config, dataset,
                   variants: dict[str, dict], lr: float, target: float, budget: float):
    """Each peer variant (``{variant: the job's keys}``) trained with Adam at ``lr`` from the
    training run's θ until the test accuracy ``target`` or ``budget`` seconds; yields (variant,
    its row) as each finishes, so that the caller can save after each. Jobs are ``job-VARIANT``."""
    arrays = dict(X_train=dataset.X_train, y_train=dataset.y_train, X_test=dataset.X_test,
                  y_test=dataset.y_test, **initial_theta(config))
    for variant, keys in variants.items():
        bench.progress(section, name, f"peer {variant}, Adam lr {lr}, budget {budget:.0f} s")
        spec = dict(model_spec(config, dataset.num_classes, keys["method"]), **keys, optimizer="adam",
                    lr=lr, iterations=10**7, seed=config.train.seed, mode="train", target_accuracy=target,
                    time_budget=budget, stop_at_target=True)
        tag = variant.replace(", ", "-").replace(" ", "")
        r = run_job(bench, python, f"{job}-{tag}", spec, arrays)
        yield variant, dict(iterations=r["iterations"], batch_size=keys.get("batch_size"),
                            test_accuracy=r["test_accuracy"], seconds=r["train_time"], budget=budget,
                            time_to_target=r["time_to_target"], iteration_at_target=r["iteration_at_target"],
                            peak_rss_bytes=r["peak_rss_bytes"])
