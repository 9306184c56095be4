"""Section 7, the gradient's cost: value + gradient against a forward solve, in forward solves,
on the cases of issue #15 (a 48² box at its initial θ; peaks on a 13³ mesh, DG1 and DG2, at the
θ that section 1 trained), with the solver's default stage memory ("auto") and with 256 MiB.

Each setting is one run of ``scripts/bench_gradient.py --cases`` on one rank (its paired
medians: the forward and the value + gradient timed back to back, so that their ratio depends
less on the machine's load than the times do).
"""

from __future__ import annotations

import json

from scripts.bench_lib.common import SCRIPTS, Bench

SECTION = "7 gradient"
CASES = "box48,peaks13-dg1,peaks13-dg2"
# label: bench_gradient.py's --stage-memory (MiB per rank, or "auto")
SETTINGS = {"auto (the default)": "auto", "256 MiB": "256"}


def run(bench: Bench) -> dict:
    """Section 7: the gradient ratio table for each stage-memory setting."""
    theta = bench.out / "runs" / "peaks" / "theta.npz"
    section = bench.results["gradient"] = dict(
        cases=CASES, repeats=bench.repeats, settings={},
        theta=str(theta.relative_to(bench.out)) if theta.exists() else None)
    for label, memory in SETTINGS.items():
        out = bench.out / "work" / f"gradient-{memory}.json"
        bench.progress(SECTION, label, f"bench_gradient.py --cases {CASES}")
        args = [SCRIPTS / "bench_gradient.py", "--cases", CASES, "--stage-memory", memory,
                "--repeats", str(bench.repeats), "--json", out]
        if theta.exists():
            args += ["--theta", theta]
        if bench.quick:
            args.append("--quick")
        bench.mpirun(1, args, f"gradient-{memory}")
        section["settings"][label] = json.loads(out.read_text())
        bench.save()
    return section
