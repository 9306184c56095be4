"""The paper's section 5 as experiments (issue #13): one command writes DIR/report.md.

    .venv/bin/python -m scripts.experiments --out docs/experiments      # the full run (1715 s here, load ~13)
    .venv/bin/python -m scripts.experiments --quick --out /tmp/exp      # a minute or two: the checks
    .venv/bin/python -m scripts.experiments --only viscosity --out docs/experiments   # section 5 alone

The torch peer runs in <repo>/.venv-peer, which scripts/peer/setup.sh makes if it is missing
(``scripts.harness.peer_python``; $PEER_PYTHON, if set, is the Python 3.11 it is made with).

Sections (each: the paper's claim, what was run, the result, whether it supports the claim):
  1. one-layer (field.kind = "mlp1") vs two-layer velocity fields, relu vs tanh, on moons, blobs
     and circles 3D at equal parameter counts; the inner hyperplanes and outer vectors of a
     trained two-layer relu field;
  2. (a) slabs L = 1 … 16 at a fixed width on spirals and peaks; (b) the smallest Euler export
     depth that reproduces the characteristics' labels against ∫₀ᵀ max|∇v| dt;
  3. plain2resnet on scikit-learn nets (iris, digits-PCA, moons): error and agreement against l;
  4. plain nets vs ResNets of equal depth in torch (the peer venv), spirals and peaks;
  5. dissipation as noise: the viscosity ε swept on moons and spirals with noisy labels, beside
     the torch peer with dropout and with Gaussian noise injection (issue #14, item 5).
`--only viscosity` runs section 5 alone and merges it into DIR/results.json (the other sections'
numbers stay as they were), then writes DIR/report.md again; `--problems moons` (or spirals) only
that problem of it (two such runs side by side merge under a lock); with `--timing` it times
J + ∇J of the trained fields side by side, with `--recheck PATHS,STEPS` it repeats the Monte
Carlo check of the viscous models (both read DIR/runs, which the sweep leaves).
Raw numbers go to DIR/results.json, figures to DIR/*.png, training runs to DIR/runs/ (scratch).
"""

from __future__ import annotations

from mpi4py import MPI  # noqa: F401  # first, as everywhere (before dolfinx)

import argparse
import fcntl
import json
import os
import platform
import sys
import time
from pathlib import Path

from scripts.experiments_lib import depth, layers, refinement, report, trainability, viscosity
from solver.rundir.files import write_json_atomic, write_text_atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny runs: checks the machinery, not the claims")
    parser.add_argument("--out", type=Path, required=True, help="directory for report.md, results.json, figures")
    parser.add_argument("--render", action="store_true", help="only write report.md again from DIR/results.json")
    parser.add_argument("--only", choices=["viscosity"],
                        help="run this section alone and merge it into DIR/results.json")
    parser.add_argument("--problems", help="section 5: only these of its problems (comma-separated), "
                        "merged into DIR/results.json beside the others (runs side by side may share DIR)")
    parser.add_argument("--recheck", metavar="PATHS,STEPS",
                        help="with --only viscosity: the Monte Carlo check of its trained viscous models "
                        "again with PATHS paths of STEPS steps (the run directories in DIR/runs)")
    parser.add_argument("--timing", action="store_true",
                        help="with --only viscosity: time J + ∇J of its trained fields side by side (the "
                        "sweep's run directories in DIR/runs) into DIR/results.json")
    args = parser.parse_args()
    out = args.out
    if args.render:
        write_text_atomic(out / "report.md", report.render(json.loads((out / "results.json").read_text())))
        return
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m scripts.experiments", *sys.argv[1:]])
    names = args.problems.split(",") if args.problems else None
    if args.only and args.recheck:
        paths, steps = (int(v) for v in args.recheck.split(","))
        path = out / "results.json"
        results = json.loads(path.read_text())
        results["section5"] = viscosity.recheck(out, results["section5"], dict(paths=paths, steps=steps))
        results["section5"]["recheck_command"] = command
        write_json_atomic(path, results)
        viscosity.figures(results["section5"], out)
        write_text_atomic(out / "report.md", report.render(results))
        print(f"wrote {out / 'report.md'}")
        return
    if args.only and args.timing:
        path = out / "results.json"
        results = json.loads(path.read_text())
        results["section5"]["timing"] = viscosity.side_by_side_timing(out, results["section5"])
        results["section5"]["timing"]["command"] = command
        write_json_atomic(path, results)
        write_text_atomic(out / "report.md", report.render(results))
        print(f"wrote {out / 'report.md'}")
        return
    if args.only:
        section = run_viscosity(out, args.quick, command, names)
        # kept whatever happens below (scratch, not committed)
        write_json_atomic(out / "work" / f"s5-section-{'-'.join(section['problems'])}.json", section)
        with open(out / ".results.lock", "w") as lock:  # side-by-side runs merge one at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = out / "results.json"
            results = json.loads(path.read_text()) if path.exists() else dict(quick=args.quick)
            results["section5"] = viscosity.merge(results.get("section5"), section)
            write_json_atomic(path, results)
            viscosity.figures(results["section5"], out)
            write_text_atomic(out / "report.md", report.render(results))
        print(f"wrote {out / 'report.md'}")
        return
    started, load_at_start = time.perf_counter(), os.getloadavg()[0]
    results = dict(quick=args.quick, command=command,
                   machine=dict(python=platform.python_version(), cores=os.cpu_count(),
                                started=time.strftime("%Y-%m-%d %H:%M:%S %Z")))

    # Section 4 runs in the peer venv, a separate process: it goes alongside the FE training.
    peer = trainability.Peer(out, args.quick)

    timing = {}
    fields: list = []  # (label, Trained) for section 2b
    t = time.perf_counter()
    results["section1"] = layers.run(out, args.quick, fields)
    figure_field = layers.figure_run(out, args.quick)
    layers.hyperplane_figure(figure_field, out / "hyperplanes.png")
    results["section1_figure_run"] = figure_field.numbers
    timing["section1"] = time.perf_counter() - t
    t = time.perf_counter()
    results["section2a"] = depth.run_slabs(out, args.quick, fields)
    depth.slabs_figure(results["section2a"], out / "slabs.png")
    timing["section2a"] = time.perf_counter() - t
    t = time.perf_counter()
    results["section2b"] = depth.run_export_depths(fields)
    depth.depth_figure(results["section2b"], out / "export_depth.png")
    timing["section2b"] = time.perf_counter() - t
    t = time.perf_counter()
    results["section3"] = refinement.run(args.quick)
    timing["section3"] = time.perf_counter() - t
    t = time.perf_counter()
    results["section4"] = peer.results()
    trainability.curves_figure(results["section4"], out / "trainability.png")
    timing["section4_wait"] = time.perf_counter() - t
    results["section5"] = run_viscosity(out, args.quick, command, names)
    viscosity.figures(results["section5"], out)
    results["timing"] = dict(timing, total=time.perf_counter() - started)
    results["machine"]["load"] = [load_at_start, os.getloadavg()[0]]
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "report.md", report.render(results))
    print(f"wrote {out / 'report.md'} ({results['timing']['total']:.0f} s)")


def run_viscosity(out: Path, quick: bool, command: str, names: list[str] | None) -> dict:
    """Section 5 (of the problems ``names``, default all), with its own command, start, wall
    time and load averages per problem."""
    started, load, clock = time.strftime("%Y-%m-%d %H:%M:%S %Z"), os.getloadavg()[0], time.perf_counter()
    section = viscosity.run(out, quick, names)
    run = dict(command=command, started=started, seconds=time.perf_counter() - clock,
               load=[load, os.getloadavg()[0]])
    section["runs"] = {name: run for name in section["problems"]}
    return section


if __name__ == "__main__":
    main()
