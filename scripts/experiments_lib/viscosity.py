"""Section 5 (the paper's section 5, item 5; issue #14): dissipation as noise, beside dropout.

The viscous transport ∂t u + v·∇u + εΔu = 0 (``field.viscosity = ε``) predicts
u(0, x) = E[f(X_T)] of the reflected SDE dX = v dt + √(2ε) dW: the mean prediction of a ResNet
with Gaussian noise √(2ε h)·ξ per block. On problems made to overfit (few training points, noisy
labels: ``data.label_noise``) ε is swept over ``EPSILONS``, over several seeds, each run by the
project's training loop at a fixed resolution (``train.adapt = false``). Per run:

- test accuracy (clean test labels) of the PDE's u_h(0, ·), and of the model's own prediction:
  for ε = 0 the characteristics (training's final check), for ε > 0 the Monte Carlo of the
  stochastic characteristics (``model/stochastic.py``), with the PDE against it on every test
  point (label agreement; max |u_h − MC| against 3 SE + bias, as ``compare CONFIG`` does);
- the smoothness of the prediction map (``smoothness``): the total variation and the largest
  slope of the predicted class probabilities on a grid of the data's box in Ω;
- seconds per iteration and time steps per solve.

Beside it, the same velocity model as a neural ODE in torch (``scripts/peer/node_peer.py`` via
``regularization_peer.py``, Euler steps, Adam, the same data and seeds) trained with dropout of
rate p on the hidden units, and with Gaussian noise injection √(2ε h)·ξ per Euler step.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from scripts.experiments_lib.common import BackgroundPeer, problem_config, spread, train_run
from scripts.harness import ROOT
from solver.config import Config
from solver.model.activations import softmax
from solver.learn.train import load_dataset
from solver.model import stochastic
from solver.model.domain import Box

EPSILONS = (0.0, 1e-3, 3e-3, 1e-2, 3e-2)
# name: problem file, mesh cells (DG1), L-BFGS iterations, seeds and the changes to the problem
# file. Few training points and noisy training labels (test labels clean); no kinetic energy
# penalty and little weight decay, so that nothing but ε (and the mesh) holds the field back.
FULL = {
    "moons": dict(problem="moons", cells=16, iterations=100, seeds=(0, 1, 2),
                  data={"points": 500, "test_fraction": 0.8, "label_noise": 0.3},
                  field={"width": 16}, train={"kinetic": 0.005, "weight_decay": 1e-5, "smoothness": 1e-3}),
    "spirals": dict(problem="spirals", cells=20, iterations=40, seeds=(0, 1, 2),
                    data={"points": 600, "test_fraction": 0.5, "label_noise": 0.1},
                    field={"width": 16}, train={"kinetic": 0.005, "weight_decay": 1e-5, "smoothness": 1e-3}),
}
QUICK = {"moons": dict(FULL["moons"], cells=8, iterations=2, seeds=(0,),
                       data={"points": 100, "test_fraction": 0.5, "label_noise": 0.3})}
QUICK_EPSILONS = (0.0, 1e-2)
# Per test point (400 and 300 of them): 500 paths of 16 steps, ~8 s per model at load ~8
# (1000 of 32: 32 s); SE ≤ 0.01, bias bound ≤ 0.02 on a random width-16 field at ε = 0.01.
MONTE_CARLO = dict(paths=500, steps=16)
QUICK_MONTE_CARLO = dict(paths=100, steps=8)
GRID = 81  # points per direction of the prediction map (spacing 0.02 in Ω: finer than the mesh)
QUICK_GRID = 21
# Adam at lr 0.01: on moons (seed 0, no regularizer) the loss falls to 0.50 in 300 iterations,
# train accuracy 0.78 on the noisy labels and test accuracy 0.955 → 0.81: it overfits; at lr 0.02
# the loss oscillated (0.54 ↔ 0.72). 8 steps per slab gave the same curve as 4.
PEER = dict(dropout=(0.1, 0.2, 0.4), noise=(3e-3, 1e-2, 3e-2), iterations=300, lr=0.01,
            steps_per_slab=4, evaluate_every=50, noise_samples=64)
QUICK_PEER = dict(PEER, dropout=(0.2,), noise=(1e-2,), iterations=4, evaluate_every=2, noise_samples=4)
PEER_SCRIPT = ROOT / "scripts" / "peer" / "regularization_peer.py"


def sweep_config(name: str, spec: dict, epsilon: float, seed: int) -> Config:
    return problem_config(spec["problem"], dict(
        mesh={"cells": spec["cells"], "degree": 1}, field={**spec["field"], "viscosity": epsilon},
        data={**spec["data"], "seed": seed},
        train={**spec["train"], "seed": seed, "iterations": spec["iterations"], "adapt": False,
               "check_every": spec["iterations"]}))


def map_grid(config: Config, n: int) -> tuple[np.ndarray, float]:
    """The n × n grid of the box the scaling puts the training data in (Ω's central box of
    half-widths (1 − margin)·(upper − lower)/2; ``model.data.Scaling``), shape=(n², 2) in the
    order of ``Box.grid`` (x1 major), and its spacing."""
    domain = config.domain_object()
    lower, upper = np.asarray(domain.lower, float), np.asarray(domain.upper, float)
    center, half = 0.5 * (lower + upper), 0.5 * (1.0 - config.data.margin) * (upper - lower)
    box = Box(tuple(center - half), tuple(center + half))
    return box.grid(n), float(2 * half[0] / (n - 1))


def smoothness(logits: np.ndarray, n: int, spacing: float) -> dict:
    """Of the class probabilities p = softmax(logits) on an n × n grid (logits shape=(n², K),
    ``Box.grid`` order, spacing h):

    - ``total_variation``: ∫ |∇p| dx with |∇p| = ‖∂p/∂x‖_F / √2 (for two classes |∇p_1|),
      forward differences per grid cell, times h²: for a sharp classifier the length of its
      decision boundary in the box, and less when the probabilities change gently;
    - ``lipschitz``: the largest |∇p| over the cells (a Lipschitz estimate of the map at the
      grid's resolution; at most √2/h).
    """
    p = softmax(logits).reshape(n, n, -1)
    dx = (p[1:, :-1] - p[:-1, :-1]) / spacing
    dy = (p[:-1, 1:] - p[:-1, :-1]) / spacing
    slope = np.sqrt(np.sum(dx**2 + dy**2, axis=2) / 2.0)
    return dict(total_variation=float(slope.sum() * spacing**2), lipschitz=float(slope.max()))


def model_check(trained, epsilon: float, mc_spec: dict, seed: int) -> dict:
    """The PDE's predictions against the model's own: for ε = 0 the characteristics
    (training's final check: its label agreement and largest logit difference are over the
    training and test points together; the accuracy is the test points'), for ε > 0 the Monte Carlo of the reflected SDE
    at every test point (``model/stochastic.py``; seed ``seed``)."""
    n_test = len(trained.test_logits)
    X_test, y_test = trained.X[-n_test:], trained.y[-n_test:]
    if epsilon == 0:
        n = trained.numbers
        return dict(reference="characteristics", test_accuracy=n["test_accuracy_characteristics"],
                    label_agreement=n["label_agreement"], max_difference=n["max_logit_difference"])
    from solver.check.compare_field import monte_carlo_agreement

    started = time.perf_counter()
    A, b = trained.A, trained.b
    mc = stochastic.solve(MPI.COMM_SELF, trained.model.field(trained.theta), trained.model.domain,
                          lambda x: x @ A.T + b, X_test, epsilon, seed=seed, **mc_spec)
    agreement = monte_carlo_agreement(trained.test_logits, mc)
    labels = mc.u0.argmax(axis=1)
    return dict(reference="Monte Carlo", test_accuracy=float(np.mean(labels == y_test)),
                label_agreement=float(np.mean(labels == trained.test_logits.argmax(axis=1))),
                max_difference=agreement["max_difference"], max_bound=agreement["max_bound"],
                within_bound=agreement["within"], paths=mc.paths, sde_steps=mc.steps,
                seconds=time.perf_counter() - started)


def run(out: Path, quick: bool, names: list[str] | None = None) -> dict:
    """The sweep of the problems ``names`` (default all), and the peer alongside it (another
    process); the prediction maps go to DIR/work/s5-maps-NAME.npz (for ``maps_figure``)."""
    problems, epsilons = (QUICK, QUICK_EPSILONS) if quick else (FULL, EPSILONS)
    if names:
        unknown = sorted(set(names) - set(problems))
        if unknown:
            raise SystemExit(f"section 5 has no problem {unknown}; expected some of {list(problems)}")
        problems = {k: v for k, v in problems.items() if k in names}
    mc_spec, n = (QUICK_MONTE_CARLO, QUICK_GRID) if quick else (MONTE_CARLO, GRID)
    peer = Peer(out, quick, problems)
    results, maps = {}, {}
    for name, spec in problems.items():
        for epsilon in epsilons:
            runs = []
            for seed in spec["seeds"]:
                config = sweep_config(name, spec, epsilon, seed)
                grid, spacing = map_grid(config, n)
                trained = train_run(config, out / "runs" / f"s5-{name}-eps{epsilon:g}-{seed}", at=grid)
                numbers = {k: v for k, v in trained.numbers.items() if k != "loss_curve"}
                numbers.update(seed=seed, n_train=len(trained.X) - len(trained.test_logits),
                               n_test=len(trained.test_logits), model=model_check(trained, epsilon, mc_spec, seed),
                               **smoothness(trained.logits_at, n, spacing))
                runs.append(numbers)
                if seed == spec["seeds"][0]:
                    n_train = len(trained.X) - len(trained.test_logits)
                    maps[(name, epsilon)] = dict(
                        p=softmax(trained.logits_at)[:, 1].reshape(n, n),
                        extent=(grid[:, 0].min(), grid[:, 0].max(), grid[:, 1].min(), grid[:, 1].max()),
                        X=trained.X[:n_train], y=trained.y[:n_train])
            results[f"{name}/eps={epsilon:g}"] = dict(
                dataset=name, epsilon=epsilon, cells=spec["cells"], iterations=spec["iterations"],
                label_noise=spec["data"]["label_noise"], n_train=runs[0]["n_train"], n_test=runs[0]["n_test"],
                parameters=runs[0]["parameters"], seeds=list(spec["seeds"]), runs=runs,
                test_accuracy=spread([r["test_accuracy"] for r in runs]),
                train_accuracy=spread([r["train_accuracy"] for r in runs]),
                model_test_accuracy=spread([r["model"]["test_accuracy"] for r in runs]),
                total_variation=spread([r["total_variation"] for r in runs]),
                lipschitz=spread([r["lipschitz"] for r in runs]),
                seconds_per_iteration=spread([r["seconds_per_iteration"] for r in runs]),
                steps=spread([r["steps"] for r in runs]),
            )
    (out / "work").mkdir(parents=True, exist_ok=True)
    for name in problems:
        np.savez(out / "work" / f"s5-maps-{name}.npz", epsilons=np.array(epsilons),
                 **{f"{key}_{i}": np.asarray(maps[(name, e)][key])
                    for i, e in enumerate(epsilons) for key in ("p", "extent", "X", "y")})
    return dict(problems={k: dict(v, seeds=list(v["seeds"])) for k, v in problems.items()},
                epsilons=list(epsilons), monte_carlo=mc_spec, grid=n, results=results,
                peer=peer.results())


def side_by_side_timing(out: Path, section: dict, repeat: int = 3) -> dict:
    """Seconds of one J + ∇J (the work of an L-BFGS iteration without its line search) at the
    final parameters of each ε's first seed, the ε of a problem timed in turn, ``repeat``
    rounds, medians: the sweep's own seconds per iteration come from runs hours apart under a
    changing load, these from the same minute. Needs the sweep's run directories (checkpoint.npz)."""
    from solver.learn.train import Problem, load_checkpoint

    timing = {}
    for name, spec in section["problems"].items():
        seed = spec["seeds"][0]
        built = []
        for epsilon in section["epsilons"]:
            state, _, _ = load_checkpoint(out / "runs" / f"s5-{name}-eps{epsilon:g}-{seed}" / "checkpoint.npz")
            built.append((epsilon, Problem.build(MPI.COMM_SELF, sweep_config(name, spec, epsilon, seed)), state.p))
        seconds: dict[float, list[float]] = {e: [] for e in section["epsilons"]}
        steps = {}
        for _ in range(repeat):
            for epsilon, problem, p in built:
                started = time.perf_counter()
                problem.J.value_and_gradient(p)
                seconds[epsilon].append(time.perf_counter() - started)
                steps[epsilon] = int(sum(problem.J.last.steps))
        for _, problem, _ in built:
            problem.destroy()
        timing[name] = [dict(epsilon=e, seconds=float(np.median(seconds[e])), steps=steps[e],
                             load=os.getloadavg()[0]) for e in section["epsilons"]]
    return dict(repeat=repeat, seed_index=0, problems=timing)


def recheck(out: Path, section: dict, mc_spec: dict) -> dict:
    """The Monte Carlo check of every viscous model again, with ``mc_spec`` (e.g. more steps):
    the PDE's test logits from one forward solve at the final parameters (the run directory's
    checkpoint.npz) on the mesh of training; the section's check numbers replaced."""
    from scripts.experiments_lib.common import Trained
    from solver.learn.train import Problem, load_checkpoint

    for r in section["results"].values():
        if r["epsilon"] == 0:
            continue
        spec = section["problems"][r["dataset"]]
        for run_ in r["runs"]:
            seed = run_["seed"]
            path = out / "runs" / f"s5-{r['dataset']}-eps{r['epsilon']:g}-{seed}" / "checkpoint.npz"
            state, _, _ = load_checkpoint(path)
            with Problem.build(MPI.COMM_SELF, sweep_config(r["dataset"], spec, r["epsilon"], seed)) as problem:
                problem.J(state.p)  # J.last: the forward solve at p
                theta, A, b = (np.array(a) for a in problem.J.split(state.p))
                ds = problem.dataset
                trained = Trained({}, problem.model, theta, A, b, np.concatenate([ds.X_train, ds.X_test]),
                                  np.concatenate([ds.y_train, ds.y_test]),
                                  test_logits=np.stack([problem.test(u) for u in problem.J.last.u0], axis=1))
                run_["model"] = model_check(trained, r["epsilon"], mc_spec, seed)
        r["model_test_accuracy"] = spread([x["model"]["test_accuracy"] for x in r["runs"]])
    section["monte_carlo"] = dict(mc_spec)
    return section


def merge(old: dict | None, new: dict) -> dict:
    """Section 5 of some problems merged into an earlier one (same ε grid): the new problems'
    numbers replace theirs; ``runs`` keeps each problem's own command, time and load."""
    if not old or old.get("epsilons") != new["epsilons"]:
        return new
    merged = dict(old)
    merged["problems"] = {**old["problems"], **new["problems"]}
    merged["results"] = {**{k: v for k, v in old["results"].items() if v["dataset"] not in new["problems"]},
                         **new["results"]}
    merged["peer"] = dict(new["peer"], results={**{k: v for k, v in old["peer"]["results"].items()
                                                   if v["dataset"] not in new["problems"]},
                                                **new["peer"]["results"]})
    merged["runs"] = {**old.get("runs", {}), **new["runs"]}
    merged["monte_carlo"], merged["grid"] = new["monte_carlo"], new["grid"]
    return merged


def figures(section: dict, out: Path) -> None:
    """Both figures of the section, from its numbers and the saved prediction maps."""
    accuracy_figure(section, out / "viscosity_accuracy.png")
    maps = {}
    for name in section["problems"]:
        with np.load(out / "work" / f"s5-maps-{name}.npz") as npz:
            for i, e in enumerate(npz["epsilons"]):
                maps[(name, float(e))] = {key: npz[f"{key}_{i}"] for key in ("p", "extent", "X", "y")}
    maps_figure(maps, section["epsilons"], out / "viscosity_maps.png")


class Peer:
    """The torch peer in the background (as ``trainability.Peer``): one job per data set, the
    same training points (noisy labels) and test points as the FE runs of seed s, for each s."""

    def __init__(self, out: Path, quick: bool, problems: dict):
        self.spec = QUICK_PEER if quick else PEER
        self.peer = BackgroundPeer(PEER_SCRIPT, "section 5")
        for name, spec in problems.items():
            for seed in spec["seeds"]:
                config = sweep_config(name, spec, 0.0, seed)
                ds = load_dataset(config, config.domain_object())
                fc, domain = config.field, config.domain_object()
                base = dict(dim=ds.dim, width=fc.width, slabs=fc.slabs, T=fc.T, activation=fc.activation,
                            classes=ds.num_classes, domain=dict(kind="box", lower=list(domain.lower),
                                                                upper=list(domain.upper)),
                            method="euler", euler_steps=self.spec["steps_per_slab"] * fc.slabs,
                            optimizer="adam", lr=self.spec["lr"], iterations=self.spec["iterations"],
                            weight_decay=config.train.weight_decay, evaluate_every=self.spec["evaluate_every"],
                            noise_samples=self.spec["noise_samples"], threads=1)
                variants = ([{"dropout": 0.0}] + [{"dropout": p} for p in self.spec["dropout"]]
                            + [{"noise": e} for e in self.spec["noise"]])
                job = out / "work" / f"s5-{name}-{seed}.npz"
                job.parent.mkdir(parents=True, exist_ok=True)
                np.savez(job, X_train=ds.X_train, y_train=ds.y_train, X_test=ds.X_test, y_test=ds.y_test,
                         spec=json.dumps(dict(base=base, seeds=[seed], variants=variants)))
                self.peer.add(name, job, job.with_suffix(".json"))
        self.peer.start()

    def results(self) -> dict:
        runs: dict[str, list] = {}
        for name, output in self.peer.outputs():
            for r in output["runs"]:
                kind, value = next(iter(r["variant"].items()))
                runs.setdefault(f"{name}/{kind}={value:g}", []).append(dict(r, dataset=name, kind=kind, value=value))
        results = {}
        for key, pick in runs.items():
            r = pick[0]
            accuracy = [x["test_accuracy_sample_mean"] if x["kind"] == "noise" else x["test_accuracy"] for x in pick]
            results[key] = dict(dataset=r["dataset"], kind=r["kind"], value=r["value"], runs=pick,
                                parameters=r["parameters"], seeds=[x["seed"] for x in pick],
                                test_accuracy=spread(accuracy),
                                test_accuracy_without_noise=spread([x["test_accuracy"] for x in pick]),
                                train_accuracy=spread([x["train_accuracy"] for x in pick]),
                                seconds_per_iteration=spread([x["seconds_per_iteration"] for x in pick]))
        return dict(spec=self.spec, results=results)


def accuracy_figure(section: dict, path: Path) -> None:
    """Test accuracy and total variation against ε (FE), beside the peer's accuracy against
    the dropout rate p and the noise ε; mean ± std over the seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, peer = section["results"], section["peer"]["results"]
    eps = [e for e in section["epsilons"]]
    shown = [max(e, 3e-4) for e in eps]  # ε = 0 drawn at 3e-4 on the log axis
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    for i, name in enumerate(section["problems"]):
        color = f"C{i}"
        rows = [results[f"{name}/eps={e:g}"] for e in eps]
        for key, style, label in (("test_accuracy", "-o", "PDE"), ("model_test_accuracy", "--s", "model (char./MC)")):
            axes[0].errorbar(shown, [r[key]["mean"] for r in rows], yerr=[r[key]["std"] for r in rows],
                             fmt=style, color=color, capsize=3, label=f"{name}: {label}")
        axes[1].errorbar(shown, [r["total_variation"]["mean"] for r in rows],
                         yerr=[r["total_variation"]["std"] for r in rows], fmt="-o", color=color, capsize=3, label=name)
        for ax, kind in ((axes[2], "dropout"), (axes[3], "noise")):
            pick = sorted((r for r in peer.values() if r["dataset"] == name and
                           (r["kind"] == kind or (r["kind"] == "dropout" and r["value"] == 0))),
                          key=lambda r: r["value"])
            x = [r["value"] if kind == "dropout" else max(r["value"], 3e-4) for r in pick]
            ax.errorbar(x, [r["test_accuracy"]["mean"] for r in pick], yerr=[r["test_accuracy"]["std"] for r in pick],
                        fmt="-o", color=color, capsize=3, label=name)
    for ax in (axes[0], axes[1], axes[3]):
        ax.set_xscale("log")
        ax.set_xlabel("ε (0 drawn at 3e-4)")
    axes[2].set_xlabel("dropout rate p")
    axes[0].set_title("FE: test accuracy vs viscosity ε", fontsize=9)
    axes[1].set_title("FE: total variation of the probability map", fontsize=9)
    axes[2].set_title("torch peer: test accuracy vs dropout p", fontsize=9)
    axes[3].set_title("torch peer: test accuracy vs noise ε (mean of samples)", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def maps_figure(maps: dict, epsilons, path: Path) -> None:
    """Per data set a row of the PDE's predicted probability of class 1 across ε (first seed),
    the 0.5 contour, and the training points in the colour of their (noisy) labels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(name for name, _ in maps))
    fig, axes = plt.subplots(len(names), len(epsilons), figsize=(2.6 * len(epsilons), 2.6 * len(names)),
                             squeeze=False)
    for row, name in enumerate(names):
        for col, e in enumerate(epsilons):
            m, ax = maps[(name, e)], axes[row, col]
            ax.imshow(m["p"].T, origin="lower", extent=m["extent"], cmap="RdBu_r", vmin=0, vmax=1)
            x1 = np.linspace(m["extent"][0], m["extent"][1], m["p"].shape[0])
            x2 = np.linspace(m["extent"][2], m["extent"][3], m["p"].shape[1])
            ax.contour(x1, x2, m["p"].T, levels=[0.5], colors="k", linewidths=0.8)
            ax.scatter(*m["X"].T, c=m["y"], cmap="RdBu_r", vmin=0, vmax=1, s=6, edgecolors="k", linewidths=0.3)
            ax.set_title(f"{name}, ε = {e:g}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
