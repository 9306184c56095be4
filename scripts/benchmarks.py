"""The benchmark suite (issue 5): one command, one report directory.

    make benchmarks                                            # the full suite into bench/ (~80 minutes)
    .venv/bin/python -m scripts.benchmarks [--out bench] [--repeats 3] [--sections 1,2,3,4,5,6,7]
    .venv/bin/python -m scripts.benchmarks --quick --out /tmp/bench   # reduced suite, ~2 minutes

Sections (``scripts/bench_lib/``, one module each):

1. learning: moons, circles (3D), spirals, blobs, peaks — the PDE route (``mpirun -n 2 python -m
   solver train``), the neural-ODE peer (dopri5 + adjoint and Euler, Adam) and scikit-learn's
   MLPClassifier on the same data: test accuracy, time, time to the target accuracy, parameters.
2. scaling: time per optimizer iteration against the number of data points N = 10³ … 10⁶, the
   PDE on 2 and 1 ranks against the peer; the crossover N.
3. prediction: the trained moons run on a 512² grid by the PDE, the characteristics and the
   exported ResNet in onnxruntime: times, ratios, differences, the three maps.
4. parallel: forward solve and gradient on 1 and 2 ranks, 2D and 3D; speedup, memory, projection.
5. memory: peak memory and time of a forward solve and a gradient (3D), stage states kept or
   recomputed from checkpoints.
6. millions: training to a target with N = 10⁶ (moons, circles 3D) and 10⁷ (moons) points, the
   PDE against the peer (full batch and minibatch) with a time budget; peak memory.
7. gradient: value + gradient against a forward solve (48² box, peaks 13³ DG1 and DG2 at
   section 1's trained θ), with the default stage memory and with 256 MiB.

The report directory gets report.md, PNG plots, results.json (the raw numbers, rewritten after
every section, so an interrupted run keeps what it measured), the configs the runs used
(``configs/``: problem files with some keys changed, never problems/*.toml itself), the training
runs (``runs/``), every subprocess's log (``logs/``) and the workers' outputs (``work/``).
Nothing in the report is typed by hand. ``--quick`` runs every section small (tiny meshes,
N ≤ 10³, a few iterations, two problems, a 128² grid, one repeat): the same report, for the tests.
The neural-ODE peer's venv (.venv-peer) is created by scripts/peer/setup.sh if it is missing.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import traceback
from pathlib import Path

from scripts.bench_lib import gradient, learning, machine, memory, millions, parallel, prediction, report, scaling
from scripts.bench_lib.common import ROOT, Bench
from scripts.bench_lib.peer import ensure_peer

SECTION_KEYS = {1: "learning", 2: "scaling", 3: "prediction", 4: "parallel", 5: "memory", 6: "millions",
                7: "gradient"}


def run_section(bench: Bench, number: int, peer_python: Path | None) -> None:
    """Run one section; its results land in ``bench.results[SECTION_KEYS[number]]``."""
    if number == 1:
        learning.run(bench, peer_python)
    elif number == 2:
        scaling.run(bench, peer_python)
    elif number == 3:
        run_dir = bench.out / "runs" / "moons"
        if not (run_dir / "theta.npz").exists():
            raise RuntimeError(f"section 3 needs the trained moons run of section 1 ({run_dir})")
        prediction.run(bench, run_dir)
    elif number == 4:
        parallel.run(bench)
    elif number == 5:
        memory.run(bench)
    elif number == 6:
        millions.run(bench, peer_python)
    else:
        gradient.run(bench)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench", help="report directory (default bench/)")
    parser.add_argument("--quick", action="store_true", help="the reduced suite (about two minutes)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of each timing (default 3, quick 1)")
    parser.add_argument("--sections", default="1,2,3,4,5,6,7",
                        help="which sections, e.g. 1,3 (3 needs 1's moons run; 7 uses 1's peaks run if there)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the sections an earlier run in --out finished without error; run the rest")
    args = parser.parse_args()
    try:
        sections = sorted({int(s) for s in args.sections.split(",") if s.strip()})
    except ValueError:
        sections = []
    if not sections or not set(sections) <= set(SECTION_KEYS):
        parser.error(f"--sections takes numbers from {sorted(SECTION_KEYS)}, got {args.sections!r}")
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    bench = Bench(args.out.resolve(), args.quick, repeats)
    command = shlex.join(["python", "-m", "scripts.benchmarks", *sys.argv[1:]])
    earlier = bench.out / "results.json"
    if args.resume and earlier.exists():
        bench.results = json.loads(earlier.read_text())
        done = [n for n in sections if "error" not in bench.results.get(SECTION_KEYS[n], {"error": 0})]
        sections = [n for n in sections if n not in done]
        bench.results["settings"]["resumed"] = bench.results["settings"].get("resumed", []) + [
            dict(command=command, date=machine.describe()["date"], sections=sections)]
        bench.progress("resume", str(earlier), f"kept sections {done}, running {sections}")
    else:
        bench.results["settings"] = dict(quick=args.quick, repeats=repeats, sections=sections, command=command)
        bench.results["machine"] = machine.describe()
    bench.save()

    peer_python = None
    if {1, 2, 6} & set(sections):
        bench.progress("setup", "peer", "scripts/peer/setup.sh (creates .venv-peer if missing)")
        peer_python = ensure_peer(bench)
    failed = []
    for number in sections:
        key = SECTION_KEYS[number]
        bench.progress(f"{number} {key}", "start")
        try:
            run_section(bench, number, peer_python)
        except Exception:  # noqa: BLE001 — record the failure, go on with the other sections
            bench.results.setdefault(key, {})["error"] = traceback.format_exc(limit=3)
            failed.append(key)
            bench.progress(f"{number} {key}", "FAILED", bench.results[key]["error"].strip().splitlines()[-1])
        bench.save()

    bench.results["load_average_at_end"] = machine.load_average()
    bench.results["settings"]["seconds"] = (bench.results["settings"].get("seconds", 0.0) if args.resume else 0.0) + (
        time.perf_counter() - bench.started)
    bench.save()
    path = report.write(bench.results, bench.out)
    bench.progress("report", str(path), f"failed sections: {failed}" if failed else "all sections done")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
