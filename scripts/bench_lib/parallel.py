"""Section 4, parallel scaling: forward solve and gradient on 1 and 2 ranks, 2D and 3D, and a
projection to more ranks from the measured cost per dof-step per rank.

Each (case, ranks) is one run of ``scripts/bench_gradient.py --config`` (its medians over the
repeats, and every rank's peak resident memory, ru_maxrss, which includes the set-up).

The projection model: a solve costs c · (dofs per rank) · (time steps), with c the measured
seconds per dof-step per rank on 2 ranks. At a fixed total size the time falls as 1/P; at fixed
dofs per rank (the 2-rank load), refining the mesh to P/2 times the dofs shrinks h by
(P/2)^(1/d), and the CFL bound adds steps in proportion. It ignores the growth of
communication with P, so it is a lower bound on the time.
"""

from __future__ import annotations

import json

from scripts.bench_lib.common import PROBLEMS, SCRIPTS, Bench, write_config

SECTION = "4 parallel"
# name: (problem file, cells, quick cells)
CASES = {"2D box (moons)": ("moons.toml", 48, 8), "3D box (circles)": ("circles3d.toml", 16, 4)}
POINTS = 1000
RANKS = (1, 2)
PROJECTED_RANKS = (4, 8, 16)


def projection(dofs: int, steps: int, dim: int, seconds_2_ranks: float) -> dict:
    """Predicted times on PROJECTED_RANKS (see the module docstring), from the 2-rank time."""
    per_dof_step = seconds_2_ranks * 2 / (dofs * steps)
    fixed_total = {p: per_dof_step * dofs * steps / p for p in PROJECTED_RANKS}
    fixed_per_rank = {p: per_dof_step * (dofs / 2) * steps * (p / 2) ** (1 / dim) for p in PROJECTED_RANKS}
    return dict(seconds_per_dof_step_per_rank=per_dof_step, fixed_total_dofs=fixed_total,
                fixed_dofs_per_rank=fixed_per_rank)


def measure(bench: Bench, name: str, config_path, ranks: int) -> dict:
    """One bench_gradient.py run of a case on ``ranks`` ranks; its JSON."""
    out = bench.out / "work" / f"parallel-{config_path.stem}-{ranks}.json"
    bench.progress(SECTION, name, f"forward and gradient on {ranks} rank(s)")
    bench.mpirun(ranks, [SCRIPTS / "bench_gradient.py", "--config", config_path, "--sizes", str(POINTS),
                         "--repeats", str(bench.repeats), "--json", out], f"parallel-{config_path.stem}-{ranks}")
    return json.loads(out.read_text())


def run(bench: Bench) -> dict:
    """Section 4 for the 2D and the 3D case."""
    section = bench.results["parallel"] = dict(points=POINTS, repeats=bench.repeats, cases={})
    for name, (source, cells, quick_cells) in CASES.items():
        cells = quick_cells if bench.quick else cells
        changes = {"mesh": {"cells": cells, "degree": 1}, "output": {"vtx": False, "png": False}}
        config_path = write_config(PROBLEMS / source, bench.out / "configs" / f"parallel-{source}", changes)
        runs = {p: measure(bench, name, config_path, p) for p in RANKS}
        row = {p: runs[p]["rows"][0] for p in RANKS}
        case = dict(config=str(config_path.relative_to(bench.out)), dim=runs[1]["dim"], cells=cells,
                    classes=runs[1]["classes"], dofs=row[1]["dofs"], steps=row[1]["steps"])
        for kind, key in (("forward", "forward_s"), ("gradient", "value_and_gradient_s")):
            t1, t2 = row[1][key], row[2][key]
            case[kind] = dict(seconds={str(p): row[p][key] for p in RANKS}, speedup=t1 / t2, efficiency=t1 / t2 / 2,
                              projection=projection(case["dofs"], case["steps"], case["dim"], t2))
        case["peak_rss_bytes_per_rank"] = {str(p): runs[p]["peak_rss_bytes_per_rank"] for p in RANKS}
        section["cases"][name] = case
        bench.save()
    return section
