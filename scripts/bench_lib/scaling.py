"""Section 2, scaling in the data size N: the time of one optimizer iteration (value + gradient).

The PDE route is ``scripts/bench_gradient.py --config`` (moons data of N points on the moons
problem's mesh and field, θ and output layer as a training run starts them) on 2 ranks and on
1; the peer times Adam iterations (``mode: iteration_time``) of the same model from the same
parameters on the same points, with dopri5 + adjoint and with Euler, on one thread. The
crossover is where the PDE route becomes cheaper per iteration than a peer method.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from scripts.bench_gradient import ConfigCase
from scripts.bench_lib import peer
from scripts.bench_lib.common import PROBLEMS, SCRIPTS, Bench, write_config
from solver.config import load_config

SECTION = "2 scaling"
SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (100, 1_000)
PEER_METHODS = ("dopri5-adjoint", "euler")
PEER_LR = 0.01
TEST_POINTS = 100  # the peer wants a test set; its accuracy is not timed


def crossover(sizes, pde_times, peer_times) -> dict:
    """The N above which the PDE route is cheaper per iteration than the peer.

    log(peer/PDE) is interpolated linearly in log N between the measured sizes; the first
    sign change from ≤ 0 to > 0 is the crossover.

    Returns:
        ``{"where": "at", "N": N*}``, or ``{"where": "below", "N": sizes[0]}`` if the PDE is
        cheaper at every size, or ``{"where": "above", "N": sizes[-1]}`` if at none.
    """
    logs = [math.log(q / p) for p, q in zip(pde_times, peer_times)]
    if logs[0] > 0:
        return dict(where="below", N=sizes[0])
    for (n0, r0), (n1, r1) in zip(zip(sizes, logs), zip(sizes[1:], logs[1:])):
        if r0 <= 0 < r1:
            fraction = -r0 / (r1 - r0)
            return dict(where="at", N=math.exp(math.log(n0) + fraction * (math.log(n1) - math.log(n0))))
    return dict(where="above", N=sizes[-1])


def ranks_name(ranks: int) -> str:
    """"1 rank", "2 ranks": the keys of the PDE's numbers."""
    return f"{ranks} rank{'s' if ranks > 1 else ''}"


def pde_times(bench: Bench, config_path: Path, sizes, ranks: int) -> dict:
    """bench_gradient.py on ``ranks`` ranks: its JSON (rows per N, θ, A, b, memory)."""
    out = bench.out / "work" / f"scaling-pde-{ranks}.json"
    bench.progress(SECTION, "moons", f"PDE value + gradient, {ranks} rank(s), N = {list(sizes)}")
    bench.mpirun(ranks, [SCRIPTS / "bench_gradient.py", "--config", config_path, "--sizes", ",".join(map(str, sizes)),
                         "--repeats", str(bench.repeats), "--json", out], f"scaling-pde-{ranks}")
    return json.loads(out.read_text())


def peer_times(bench: Bench, python: Path, config_path: Path, sizes, parameters: dict) -> dict:
    """The peer's median iteration time per method and N, from the PDE run's parameters."""
    config = load_config(config_path)
    case = ConfigCase(config_path)
    start = dict(peer.initial_theta(config, np.asarray(parameters["theta"])),
                 A=np.asarray(parameters["A"]), b=np.asarray(parameters["b"]))
    times, nfe, memory = ({method: [] for method in PEER_METHODS} for _ in range(3))
    for n in sizes:
        X, y = case.data(n)
        arrays = dict(X_train=X, y_train=y, X_test=X[:TEST_POINTS], y_test=y[:TEST_POINTS], **start)
        for method in PEER_METHODS:
            bench.progress(SECTION, "moons", f"peer {method}, N = {n}")
            spec = dict(peer.model_spec(config, case.num_classes, method), optimizer="adam", lr=PEER_LR,
                        seed=config.train.seed, mode="iteration_time", repeats=bench.repeats)
            r = peer.run_job(bench, python, f"scaling-{method}-{n}", spec, arrays)
            times[method].append(r["median_iteration_time"])
            nfe[method].append([r["nfe"], r["nfe_backward"]])
            memory[method].append(r["peak_rss_bytes"])
    return dict(times=times, nfe_forward_backward=nfe, peak_rss_bytes=memory)


def run(bench: Bench, peer_python: Path) -> dict:
    """Section 2: PDE on 2 and 1 ranks, the peer's two methods, crossovers, ratio at the largest N."""
    sizes = QUICK_SIZES if bench.quick else SIZES
    changes = {"output": {"vtx": False, "png": False}}
    if bench.quick:
        changes["mesh"] = {"cells": 8}
    config_path = write_config(PROBLEMS / "moons.toml", bench.out / "configs" / "scaling-moons.toml", changes)
    pde = {ranks: pde_times(bench, config_path, sizes, ranks) for ranks in (2, 1)}
    section = bench.results["scaling"] = dict(
        sizes=list(sizes), config=str(config_path.relative_to(bench.out)), repeats=bench.repeats, peer_lr=PEER_LR,
        dofs=pde[2]["rows"][0]["dofs"], steps=pde[2]["rows"][0]["steps"],
        pde={ranks_name(ranks): [r["value_and_gradient_s"] for r in pde[ranks]["rows"]] for ranks in (2, 1)},
        pde_forward={ranks_name(ranks): [r["forward_s"] for r in pde[ranks]["rows"]] for ranks in (2, 1)},
        pde_peak_rss_bytes_per_rank={ranks_name(ranks): max(pde[ranks]["peak_rss_bytes_per_rank"]) for ranks in (2, 1)},
    )
    bench.save()
    measured = peer_times(bench, peer_python, config_path, sizes, pde[2])
    section["peer"] = measured["times"]
    section["peer_nfe_forward_backward"] = measured["nfe_forward_backward"]
    section["peer_peak_rss_bytes"] = measured["peak_rss_bytes"]
    section["crossover"] = {
        f"{method} vs PDE {ranks}": crossover(sizes, section["pde"][ranks], section["peer"][method])
        for method in PEER_METHODS for ranks in section["pde"]
    }
    section["ratio_at_largest_N"] = {
        f"{method} / PDE {ranks}": section["peer"][method][-1] / section["pde"][ranks][-1]
        for method in PEER_METHODS for ranks in section["pde"]
    }
    section["pde_speedup_1_to_2_ranks"] = [a / b for a, b in zip(section["pde"]["1 rank"], section["pde"]["2 ranks"])]
    bench.save()
    return section
