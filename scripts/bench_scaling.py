"""Communication per step from PETSc's own log, compute per dof-step, and a scaling model to 64 ranks.

    .venv/bin/python -m scripts.bench_scaling --out /tmp/bench-scaling            # 1–4 ranks, 2D + 3D
    .venv/bin/python -m scripts.bench_scaling --doc docs/benchmarks/scaling.md    # also the doc
    .venv/bin/python -m scripts.bench_scaling --quick                             # small meshes (tests)

For each case (a 2D and a 3D box, DG1, K = 2, width 8, 4 slabs, 1000 points) one
``mpirun -n P`` worker per P = 1 … 4 runs one forward solve and one value + gradient under PETSc's
log (``PETSc.Log.begin()``; each event's ``getPerfInfo`` on every rank, differenced around the
call) and reports, per event (MatMatMultNum: the RK3 products L·U, MatMult, MatTranspose, the
assembly, PetscSF), calls, messages and bytes; the DG index map's ghosts and neighbour ranks
(what a product must receive: the dofs of the facet neighbours on other ranks); and the times
(medians of paired repeats, forward and value + gradient). The scatters dolfinx does itself
(the gradient's pairs, ``dolfinx.la.Vector.scatter_forward/reverse``) are not in PETSc's log:
they are counted by wrapping those two methods.

Times at P > 2 are oversubscribed on a 2-core machine and say nothing; the compute per dof-step
comes from P = 1 (P = 2 is set beside the model), the messages and bytes (which are not times)
from P = 1 … 4.

The halo to 64 ranks is counted, not extrapolated: the mesh is built on one process, dolfinx's
own cell partitioner (the one ``create_rectangle``/``create_box`` use) splits it into P parts,
and each part's ghost cells (facet neighbours in another part) and neighbour parts are counted.
At P = 2 … 4 the counts are set beside the ghosts the P-rank runs had (the partitions may differ a
little: the runs partition in parallel). Weak scaling scales the counted ghosts with the surface
of a part, (dofs per part)^((d−1)/d).

The model (``model_time``; its assumptions are written into the report): a solve costs
``S (o + c · N K / P · imbalance)  +  products · (m α + b / β)  +  scatters · (m α + b' / β)
+  reductions · 2 log2(P) α``, with c and o fitted to 1-rank runs of the case's mesh and of a
small one stepped as often.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import time
from pathlib import Path

from scripts.harness import ROOT, mpirun, subprocess_env

CASES = {
    "2D box 128², DG1": dict(dim=2, cells=128, degree=1, small=16),
    "3D box 16³, DG1": dict(dim=3, cells=16, degree=1, small=4),
}
QUICK = {
    "2D box 8², DG1": dict(dim=2, cells=8, degree=1, small=4),
    "3D box 3³, DG1": dict(dim=3, cells=3, degree=1, small=2),
}
K, WIDTH, SLABS, POINTS = 2, 8, 4, 1000
RANKS = (1, 2, 3, 4)
TIME_RANKS = (1, 2)  # the machine's cores: timings beyond are oversubscribed
PROJECTED = (1, 2, 4, 8, 16, 32, 64)
# PETSc events whose messages are reported (MatMult: the solver uses MatMatMult; listed to show 0).
EVENTS = ("MatMatMultNum", "MatMatMultSym", "MatMult", "MatTranspose", "MatAssemblyBegin",
          "MatAssemblyEnd", "SFBcastBegin", "SFReduceBegin", "BuildTwoSided", "BuildTwoSidedF")

# The model's assumed machine: a typical cluster interconnect (InfiniBand HDR/EDR class), one rank
# per core. Stated, not measured here.
ASSUMED = dict(
    latency_s=2e-6,  # α: per message, MPI point-to-point between nodes (~1–2 µs on InfiniBand)
    bandwidth_Bps=3e9,  # β: per rank, a 100–200 Gb/s NIC shared by the ranks of a node that talk off-node
)
# A slower network for the summary's sensitivity line: 10 Gb/s Ethernet class, TCP latency.
SLOW_NETWORK = (20e-6, 1e9)


# --------------------------------------------------------------------------------------- worker


def worker(case: dict, repeats: int) -> dict | None:
    """One case on COMM_WORLD: PETSc's log of a forward and a value + gradient, the halo, the
    times. Returns the report on rank 0 (None elsewhere)."""
    from mpi4py import MPI
    from petsc4py import PETSc

    PETSc.Log.begin()

    import dolfinx
    import numpy as np

    from solver.fem.mesh import create_mesh
    from solver.fem.transport import TransportSolver
    from solver.learn.reduced import ReducedFunctional
    from solver.model.domain import Box
    from solver.model.velocity import VelocityModel
    from solver.parallel import rank_share

    comm = MPI.COMM_WORLD
    d = case["dim"]
    domain = Box((-1.0,) * d, (1.0,) * d)
    mesh = create_mesh(comm, domain, case["cells"])
    with TransportSolver(mesh, degree=case["degree"], num_components=K) as solver:
        model = VelocityModel(dim=d, width=WIDTH, slabs=SLABS, T=1.0, activation="tanh", domain=domain)
        X = np.random.default_rng(0).uniform(-0.8, 0.8, (POINTS, d))
        y = (X[:, 0] * X[:, 1] > 0).astype(int)
        mine = rank_share(comm, POINTS)
        with ReducedFunctional(solver, model, X[mine], y[mine], K) as J:
            p = J.initial(0, 1.5)
            J.value_and_gradient(p)  # compile, warm the caches, make the product data
            # the CFL steps, or (the small mesh of the fit) the large mesh's: more steps than the CFL bound
            # needs are stable, and the same S makes the per-slab work weigh alike in both
            J.freeze_steps(case.get("freeze") or J.last.steps)
            if "freeze" in case:
                J.value_and_gradient(p)  # warm again at the frozen steps
            steps = int(sum(J.last.steps))

            scatters = _count_dolfinx_scatters(dolfinx.la.Vector)

            def logged(fn) -> dict:
                before = {name: PETSc.Log.Event(name).getPerfInfo() for name in EVENTS}
                scatters.clear()
                fn()
                after = {name: PETSc.Log.Event(name).getPerfInfo() for name in EVENTS}
                events = {name: {k: after[name][k] - before[name][k] for k in ("count", "flops", "time", "numMessages",
                                                                              "messageLength", "numReductions")}
                          for name in EVENTS}
                return dict(events=events, dolfinx_scatters=dict(scatters))

            forward_log = logged(lambda: J(p))
            gradient_log = logged(lambda: J.value_and_gradient(p))

            def timed(fn) -> tuple[float, float]:
                """Wall and CPU seconds of this process, the max over ranks. On a shared machine the
            CPU time is the better measure of the work (the wall time waits for other jobs)."""
                comm.Barrier()
                t, cpu = time.perf_counter(), time.process_time()
                fn()
                return (comm.allreduce(time.perf_counter() - t, op=MPI.MAX),
                        comm.allreduce(time.process_time() - cpu, op=MPI.MAX))

            pairs = [(*timed(lambda: J(p)), *timed(lambda: J.value_and_gradient(p))) for _ in range(repeats)]

            imap = solver.V.dofmap.index_map
            owners = np.asarray(imap.owners)
            receive = np.bincount(owners, minlength=comm.size)  # ghost dofs from each rank
            send = np.asarray(comm.alltoall(receive.tolist()))  # my dofs each rank ghosts
            info = solver.L.getInfo()
            rank = dict(owned=int(imap.size_local), ghosts=int(imap.num_ghosts),
                        receive_from=int(np.count_nonzero(receive)), send_to=int(np.count_nonzero(send)),
                        send_dofs=int(send.sum()), nnz=int(info["nz_used"]), forward=forward_log, gradient=gradient_log)
            ranks = comm.gather(rank, root=0)
            report = None
            if comm.rank == 0:
                f, f_cpu, g, g_cpu = np.median(np.array(pairs), axis=0)
                report = dict(ranks=comm.size, dofs=int(solver.num_dofs_global), K=K, steps=steps,
                              steps_per_piece=[int(n) for n in J.last.steps],
                              slabs=SLABS, forward_s=float(f), value_and_gradient_s=float(g),
                              forward_cpu_s=float(f_cpu), value_and_gradient_cpu_s=float(g_cpu),
                              per_rank=ranks)
    return report


def _count_dolfinx_scatters(vector_class) -> dict:
    """Wrap dolfinx.la.Vector.scatter_forward/reverse to count calls and ghost values moved
    (they are dolfinx's own MPI, outside PETSc's log). Returns the live counter."""
    counter: dict[str, float] = {}

    def wrap(name):
        original = getattr(vector_class, name)

        def counted(self, *args, **kwargs):
            values = self.index_map.num_ghosts * self.block_size
            counter[f"{name}_calls"] = counter.get(f"{name}_calls", 0) + 1
            counter[f"{name}_values"] = counter.get(f"{name}_values", 0) + values
            return original(self, *args, **kwargs)

        setattr(vector_class, name, counted)

    for name in ("scatter_forward", "scatter_reverse"):
        wrap(name)
    return counter


# ------------------------------------------------------------------------- partition counting


def partition_halo(case: dict, parts: int) -> dict:
    """The halo dolfinx's cell partitioner gives ``case``'s mesh on ``parts`` ranks, counted on
    one process: per part its cells, ghost cells (facet neighbours in another part) and
    neighbour parts; the max and mean over parts."""
    from mpi4py import MPI

    import dolfinx
    import dolfinx.graph
    import numpy as np

    from solver.fem.mesh import create_mesh
    from solver.model.domain import Box

    d = case["dim"]
    mesh = create_mesh(MPI.COMM_SELF, Box((-1.0,) * d, (1.0,) * d), case["cells"])
    topology = mesh.topology
    cells = topology.connectivity(d, 0).array.astype(np.int64)
    num_cells = topology.index_map(d).size_local
    if parts == 1:
        owner = np.zeros(num_cells, dtype=np.int64)
    else:
        partitioner = dolfinx.mesh.create_cell_partitioner(dolfinx.graph.partitioner(), dolfinx.mesh.GhostMode.none, 2)
        destinations = partitioner(MPI.COMM_SELF, parts, [topology.cell_type], [cells])
        owner = np.asarray(destinations.array)[np.asarray(destinations.offsets)[:-1]]
    topology.create_connectivity(d - 1, d)
    f2c = topology.connectivity(d - 1, d)
    offsets = np.asarray(f2c.offsets)
    interior = np.flatnonzero(np.diff(offsets) == 2)
    pair = np.asarray(f2c.array)[offsets[interior][:, None] + np.arange(2)]
    a, b = owner[pair[:, 0]], owner[pair[:, 1]]
    cut = a != b
    # each side ghosts the other's cell; a cell ghosted by one part over two facets counts once
    ghost_pairs = np.unique(np.concatenate([np.stack([a[cut], pair[cut, 1]], 1), np.stack([b[cut], pair[cut, 0]], 1)]), axis=0)
    ghost_cells = np.bincount(ghost_pairs[:, 0], minlength=parts)
    neighbour_pairs = np.unique(np.concatenate([np.stack([a[cut], b[cut]], 1), np.stack([b[cut], a[cut]], 1)]), axis=0)
    neighbours = np.bincount(neighbour_pairs[:, 0], minlength=parts) if len(neighbour_pairs) else np.zeros(parts, int)
    owned = np.bincount(owner, minlength=parts)
    return dict(parts=parts, cells=int(num_cells), owned_max=int(owned.max()), owned_mean=float(owned.mean()),
                ghost_cells_max=int(ghost_cells.max()), ghost_cells_mean=float(ghost_cells.mean()),
                neighbours_max=int(neighbours.max()), neighbours_mean=float(neighbours.mean()))


# ----------------------------------------------------------------------------- driver, model


def run_worker(case: dict, ranks: int, repeats: int) -> dict:
    cmd = mpirun(ranks, ["-m", "scripts.bench_scaling", "--worker", json.dumps(case), "--repeats", repeats])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=subprocess_env())
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])


def dofs_per_cell(dim: int, degree: int) -> int:
    return math.comb(degree + dim, dim)


def event_summary(run: dict, which: str, event: str) -> dict:
    """Calls (per rank), messages and bytes of one event in one solve: all ranks together (each
    message counted once, as -log_view does: sends and receives are both logged, so halved), and
    per call; the busiest rank's per call."""
    infos = [r[which]["events"][event] for r in run["per_rank"]]
    calls = max(i["count"] for i in infos)
    messages = sum(i["numMessages"] for i in infos) / 2
    volume = sum(i["messageLength"] for i in infos) / 2
    per = max(calls, 1)
    return dict(calls=calls, messages=messages, bytes=volume, messages_per_call=messages / per,
                bytes_per_call=volume / per, max_rank_messages_per_call=max(i["numMessages"] for i in infos) / 2 / per,
                max_rank_bytes_per_call=max(i["messageLength"] for i in infos) / 2 / per,
                flops=sum(i["flops"] for i in infos), reductions=max(i["numReductions"] for i in infos))


def reductions(slabs: int) -> dict:
    """The mpi4py reductions of a solve, counted in the code (solver/fem/transport.py,
    solver/learn/reduced.py): per slab the max |v_h|; per solve the terminal values' check,
    the growth check (2), the loss; a gradient adds the gradient's Allreduce."""
    forward = slabs + 4
    return dict(forward=forward, gradient=forward + 1)


def model_time(c: float, o: float, dofs_total: float, steps: float, P: int, imbalance: float, products: float,
               neighbours: float, product_bytes: float, scatters: float, scatter_bytes: float,
               n_reductions: int, alpha: float, beta: float) -> dict:
    """The model's time of one solve on P ranks and its parts (seconds)."""
    compute = steps * (o + c * dofs_total / P * imbalance)
    halo = products * (neighbours * alpha + product_bytes / beta) if P > 1 else 0.0
    scatter = scatters * (neighbours * alpha + scatter_bytes / beta) if P > 1 else 0.0
    reduce = n_reductions * 2 * math.log2(P) * alpha if P > 1 else 0.0
    return dict(total=compute + halo + scatter + reduce, compute=compute, halo=halo + scatter, reductions=reduce)


def analyse(name: str, case: dict, runs: dict[int, dict], partitions: dict[int, dict], alpha: float,
            beta: float) -> dict:
    """Per case: the logged communication table, compute per dof-step, the model and its
    strong and weak projections."""
    one = runs[1]
    N, steps, nd = one["dofs"], one["steps"], dofs_per_cell(case["dim"], case["degree"])
    rows = []
    for P, run in sorted((P, r) for P, r in runs.items() if P != "small"):
        fwd = event_summary(run, "forward", "MatMatMultNum")
        grd = event_summary(run, "gradient", "MatMatMultNum")
        ghosts = [r["ghosts"] for r in run["per_rank"]]
        rows.append(dict(
            ranks=P, products_forward=fwd["calls"], products_gradient=grd["calls"],
            messages_per_product=fwd["messages_per_call"], bytes_per_product=fwd["bytes_per_call"],
            max_rank_messages_per_product=fwd["max_rank_messages_per_call"],
            max_rank_bytes_per_product=fwd["max_rank_bytes_per_call"],
            ghost_dofs_total=sum(ghosts), ghost_dofs_max=max(ghosts),
            bytes_from_ghosts=8 * K * sum(ghosts),
            neighbours_max=max(r["receive_from"] for r in run["per_rank"]),
            flops_per_dof_step=fwd["flops"] / (N * K * steps),
            transpose=event_summary(run, "gradient", "MatTranspose"),
            assembly=event_summary(run, "forward", "MatAssemblyBegin"),
            matmult_calls=event_summary(run, "forward", "MatMult")["calls"],
            dolfinx_scatters_gradient=run["per_rank"][0]["gradient"]["dolfinx_scatters"],
            forward_s=run["forward_s"], value_and_gradient_s=run["value_and_gradient_s"],
            forward_cpu_s=run.get("forward_cpu_s", run["forward_s"]),
            value_and_gradient_cpu_s=run.get("value_and_gradient_cpu_s", run["value_and_gradient_s"]),
            seconds_per_dof_step_forward=run["forward_s"] * P / (N * K * steps),
            seconds_per_dof_step_gradient=run["value_and_gradient_s"] * P / (N * K * steps),
        ))
    by_p = {r["ranks"]: r for r in rows}
    # compute per step on one rank = o + c · N K: c per dof-step and o per step (Python, PETSc's
    # per-call work), from the 1-rank runs of this mesh and of the small one (about the dofs per
    # rank of the largest projection, the same steps): without o a strong projection is too
    # optimistic
    small = runs["small"]
    fit = {}
    for key, solve in (("forward", "forward"), ("value_and_gradient", "gradient")):
        cpu = lambda run: run.get(f"{key}_cpu_s", run[f"{key}_s"])  # CPU seconds: see worker's timed
        big_step, small_step = cpu(one) / steps, cpu(small) / small["steps"]
        c = (big_step - small_step) / (K * (N - small["dofs"]))
        fit[solve] = (max(c, 0.0), max(small_step - c * K * small["dofs"], 0.0))
    (c_forward, o_forward), (c_gradient, o_gradient) = fit["forward"], fit["gradient"]
    products_fwd = by_p[max(by_p)]["products_forward"]
    products_grd = by_p[max(by_p)]["products_gradient"]
    ranks = [P for P in runs if P != "small"]
    # dolfinx's scatters in a gradient (calls, and values per call per rank, with the bytes
    # proportional to the ghosts: values / ghost dofs at the largest P run)
    top = runs[max(ranks)]
    sc = top["per_rank"][0]["gradient"]["dolfinx_scatters"]
    scatter_calls = sc.get("scatter_forward_calls", 0) + sc.get("scatter_reverse_calls", 0)
    scatter_values = sc.get("scatter_forward_values", 0) + sc.get("scatter_reverse_values", 0)
    scatter_width = scatter_values / max(scatter_calls, 1) / max(top["per_rank"][0]["ghosts"], 1)
    red = reductions(one["slabs"])

    def project(P: int, part: dict, scale_dofs: float, scale_steps: float) -> dict:
        ghosts_max = part["ghost_cells_max"] * nd * scale_dofs ** ((case["dim"] - 1) / case["dim"])
        owned_scale = part["owned_max"] / part["owned_mean"]
        common = dict(P=P, imbalance=owned_scale, neighbours=part["neighbours_max"],
                      product_bytes=8 * K * ghosts_max, scatter_bytes=8 * scatter_width * ghosts_max,
                      alpha=alpha, beta=beta)
        f = model_time(c_forward, o_forward, N * K * scale_dofs, steps * scale_steps, products=products_fwd * scale_steps,
                       scatters=0, n_reductions=red["forward"], **common)
        g = model_time(c_gradient, o_gradient, N * K * scale_dofs, steps * scale_steps, products=products_grd * scale_steps,
                       scatters=scatter_calls * scale_steps, n_reductions=red["gradient"], **common)
        return dict(P=P, ghost_dofs_max=ghosts_max, neighbours_max=part["neighbours_max"], imbalance=owned_scale,
                    forward=f, gradient=g)

    strong = [project(P, partitions[P], 1.0, 1.0) for P in sorted(partitions)]
    for row in strong:
        row["forward"]["speedup"] = strong[0]["forward"]["total"] / row["forward"]["total"]
        row["gradient"]["speedup"] = strong[0]["gradient"]["total"] / row["gradient"]["total"]
    # Weak: the mesh refined so that each rank keeps the 1-rank dofs (N · P in all): the ghosts
    # of the P-part partition grow with the surface of a part, (dofs per part)^((d-1)/d), P times
    # the dofs per part of the counted P-part partition of this mesh; h shrinks by P^(1/d), and
    # with it the CFL step (the steps, and so the products and scatters, grow by P^(1/d)).
    weak = [project(P, partitions[P], float(P), P ** (1 / case["dim"])) for P in sorted(partitions)]
    for row in weak:
        growth = row["P"] ** (1 / case["dim"])  # per step: the steps grew by P^(1/d)
        row["forward"]["efficiency"] = weak[0]["forward"]["total"] * growth / row["forward"]["total"]
        row["gradient"]["efficiency"] = weak[0]["gradient"]["total"] * growth / row["gradient"]["total"]
    return dict(name=name, case=case, dofs=N, K=K, steps=steps, dofs_per_cell=nd, measured=rows,
                c_forward=c_forward, c_gradient=c_gradient, o_forward=o_forward, o_gradient=o_gradient,
                small=dict(cells=case["small"], dofs=small["dofs"], steps=small["steps"],
                           forward_s=small.get("forward_cpu_s", small["forward_s"]),
                           value_and_gradient_s=small.get("value_and_gradient_cpu_s", small["value_and_gradient_s"])), products_forward=products_fwd,
                products_gradient=products_grd, scatter_calls_gradient=scatter_calls,
                scatter_width=scatter_width, reductions=red,
                partitions={str(P): v for P, v in partitions.items()}, strong=strong, weak=weak,
                symbolic=[dict(ranks=P, calls=event_summary(run, "forward", "MatMatMultSym")["calls"],
                               seconds=max(r["forward"]["events"]["MatMatMultSym"]["time"] for r in run["per_rank"]),
                               numeric_seconds=max(r["forward"]["events"]["MatMatMultNum"]["time"] for r in run["per_rank"]))
                          for P, run in sorted((P, r) for P, r in runs.items() if P != "small")])


# ------------------------------------------------------------------------------------- report


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def check_at_2(case: dict) -> str:
    """The model's 2-rank time beside the measured one (this machine: on-node messages)."""
    measured = {r["ranks"]: r for r in case["measured"]}
    model = {r["P"]: r for r in case["strong"]}
    if 2 not in measured or 2 not in model:
        return ""
    m, p = measured[2], model[2]
    return (f"At 2 ranks the model gives {p['forward']['total']:.3g} s (forward) and {p['gradient']['total']:.3g} s "
            f"(value + gradient); measured here (CPU) {m['forward_cpu_s']:.3g} s and "
            f"{m['value_and_gradient_cpu_s']:.3g} s (on-node messages, and the other jobs on the machine; "
            f"speedup {measured[1]['forward_cpu_s'] / m['forward_cpu_s']:.2f} and "
            f"{measured[1]['value_and_gradient_cpu_s'] / m['value_and_gradient_cpu_s']:.2f}).")


def markdown(results: dict) -> str:
    a = results["assumed"]
    out = [
        "# Parallel scaling: communication from PETSc's log, and a projection to 64 ranks",
        "",
        f"Generated by `{results['command']}` on {results['date']} ({results['machine']}"
        + (f", load average {results['load'][0]:.1f} at the start and {results['load'][1]:.1f} at the end: "
           "the machine was shared, so the times are inflated" if "load" in results else "")
        + "). Do not edit: rerun the command.",
        "",
        f"Cases: DG1 boxes, K = {K} components, width {WIDTH}, {SLABS} slabs, {POINTS} data points, θ of "
        "scale 1.5, the step counts frozen; one forward solve and one value + gradient per run. "
        "Messages and bytes are PETSc's (`PETSc.Log.begin()`, each event's `getPerfInfo` on every rank, "
        "summed over ranks and halved as `-log_view` does: a message is logged by its sender and its "
        "receiver). Times at 3 and 4 ranks are oversubscribed (2 cores) and are not used.",
        "",
        "## Summary",
        "",
    ]
    for case in results["cases"]:
        strong, weak, r = case["strong"][-1], case["weak"][-1], case["measured"][-1]
        slow = results.get("slow_network", {}).get("cases", {}).get(case["name"])
        out.append(
            f"- **{case['name']}** ({case['dofs']:,} dofs × {K}): a MatMatMult (one RK3 stage) sends "
            f"{r['messages_per_product']:.0f} messages, {r['bytes_per_product']:,.0f} bytes in all on "
            f"{r['ranks']} ranks (busiest rank {r['max_rank_messages_per_product']:.0f} messages, "
            f"{r['max_rank_bytes_per_product']:,.0f} bytes); a forward time step, three of them: "
            f"{3 * r['messages_per_product']:.0f} messages, {3 * r['bytes_per_product']:,.0f} bytes. Projected to {strong['P']} ranks on this mesh: "
            f"forward {strong['forward']['speedup']:.0f}×, value + gradient {strong['gradient']['speedup']:.0f}× "
            f"(of the forward's time there: communication {strong['forward']['halo'] / strong['forward']['total']:.0%}, "
            f"the per-step overhead o = {case['o_forward'] * 1e6:.0f} µs "
            f"{case['steps'] * case['o_forward'] / strong['forward']['total']:.0%}; the largest part has "
            f"{strong['imbalance'] - 1:.1%} more cells than the mean)"
            + (f"; on a slower network (α = {SLOW_NETWORK[0] * 1e6:.0f} µs, β = {SLOW_NETWORK[1] / 1e9:.0f} GB/s) "
               f"{slow['forward']['speedup']:.0f}× and {slow['gradient']['speedup']:.0f}×" if slow else "")
            + f". Weak scaling to {weak['P']} ranks ({case['dofs'] * weak['P']:,} dofs): "
              f"{weak['forward']['efficiency']:.0%} (forward) and {weak['gradient']['efficiency']:.0%} (gradient) "
              "per time step.")
    out.append("")
    for case in results["cases"]:
        N, steps = case["dofs"], case["steps"]
        out += [f"## {case['name']}: {N:,} dofs per component, {steps} time steps per solve", "",
                "### Measured (1–4 ranks)", ""]
        rows = []
        for r in case["measured"]:
            rows.append([r["ranks"], r["products_forward"], r["products_gradient"], r["matmult_calls"],
                         f"{r['messages_per_product']:.0f}", f"{r['bytes_per_product']:,.0f}",
                         f"{r['bytes_from_ghosts']:,}", f"{r['max_rank_messages_per_product']:.1f}",
                         f"{r['max_rank_bytes_per_product']:,.0f}",
                         f"{r['transpose']['calls']} / {r['transpose']['messages']:.0f} / {r['transpose']['bytes']:,.0f}",
                         f"{r['assembly']['calls']} / {r['assembly']['messages']:.0f} / {r['assembly']['bytes']:,.0f}",
                         f"{r['flops_per_dof_step']:.1f}"])
        out += [table(["ranks", "MatMatMult / forward", "MatMatMult / gradient", "MatMult", "messages / MatMatMult",
                       "bytes / MatMatMult", "8·K·ghost dofs", "busiest rank: messages", "busiest rank: bytes",
                       "MatTranspose / gradient: calls / messages / bytes",
                       "MatAssembly / forward: calls / messages / bytes", "flops / dof-step"], rows), ""]
        r4 = case["measured"][-1]
        sc = r4["dolfinx_scatters_gradient"]
        out += [f"Each RK3 stage is one MatMatMult (L times the n × {K} block), 3 per step: "
                f"{case['products_forward']} per forward ({steps} steps), "
                f"{case['products_gradient']} per value + gradient on {r4['ranks']} ranks (the forward, the transposed "
                "steps, and the recomputation of the stages not kept: fewer on more ranks, whose "
                "`solver.stage_memory` per rank holds more of the steps). The MatAssembly calls of a forward are "
                "the operator's, once per slab, and the result block's of each product (without messages). A MatMatMult's bytes are exactly 8 · K · (ghost dofs of "
                "the DG index map), the facet neighbours' dofs on other ranks (column '8·K·ghost dofs'). "
                f"Outside PETSc's log, a gradient on {r4['ranks']} ranks did {sc.get('scatter_forward_calls', 0)} "
                f"dolfinx forward scatters and {sc.get('scatter_reverse_calls', 0)} reverse scatters of "
                f"{case['scatter_width']:.0f} values per ghost dof (the stage pairs of the slab derivative, "
                "queued and sent together), and "
                f"{case['reductions']['forward']} / {case['reductions']['gradient']} mpi4py reductions per "
                "forward / gradient (counted in the code).", ""]
        rows = [[r["ranks"], f"{r['forward_s']:.3f}", f"{r['forward_cpu_s']:.3f}", f"{r['value_and_gradient_s']:.3f}",
                 f"{r['value_and_gradient_cpu_s']:.3f}",
                 f"{1e9 * r['forward_cpu_s'] * r['ranks'] / (N * K * steps):.1f}",
                 f"{1e9 * r['value_and_gradient_cpu_s'] * r['ranks'] / (N * K * steps):.1f}"]
                for r in case["measured"] if r["ranks"] in TIME_RANKS]
        out += ["Compute (medians of paired repeats, max over ranks; CPU: the process's CPU time, which on a "
                "shared machine measures the work better than the wall time, but includes MPI's busy waiting "
                "at 2 ranks):", "",
                table(["ranks", "forward s (wall)", "forward s (CPU)", "value + gradient s (wall)",
                       "value + gradient s (CPU)", "forward ns CPU / dof-step / rank",
                       "gradient ns CPU / dof-step / rank"], rows), "",
                f"One rank's time per step is o + c · N K, fitted to this mesh and a {case['small']['cells']}-cell "
                f"one ({case['small']['dofs']:,} dofs, {case['small']['steps']} steps: "
                f"{case['small']['forward_s']:.3g} s forward, {case['small']['value_and_gradient_s']:.3g} s value + "
                f"gradient, 1 rank, CPU): c = {1e9 * case['c_forward']:.1f} ns per dof-step and o = "
                f"{1e6 * case['o_forward']:.0f} µs per step (forward), c = {1e9 * case['c_gradient']:.1f} ns and o = "
                f"{1e6 * case['o_gradient']:.0f} µs (value + gradient, per forward step). The small mesh has "
                "about the dofs per rank of the 64-rank projection and is stepped as often, so the compute "
                "there is measured, not extrapolated; o is what the fit leaves per step, within the noise of "
                "this shared machine. " + check_at_2(case), ""]
        sym = {r["ranks"]: r for r in case["symbolic"]}
        out += [f"PETSc also logs a MatMatMultSym (symbolic product) with every numeric one "
                f"({sym[1]['calls']} per forward on 1 rank: `Block.product` passes a result made by `createDense`, "
                "not by a first product, so PETSc sets the product up each call), but it costs nothing that "
                f"matters: {sym[1]['seconds']:.3f} s against {sym[1]['numeric_seconds']:.3f} s of MatMatMultNum.", ""]
        out += ["### The halo dolfinx's partitioner gives on P ranks (counted on one process)", ""]
        rows = []
        for P, part in sorted(case["partitions"].items(), key=lambda kv: int(kv[0])):
            measured = next((r for r in case["measured"] if r["ranks"] == int(P)), None)
            rows.append([P, f"{part['owned_max']:,}", f"{part['owned_max'] / part['owned_mean']:.3f}",
                         f"{part['ghost_cells_max'] * case['dofs_per_cell']:,}",
                         f"{measured['ghost_dofs_max']:,}" if measured else "",
                         part["neighbours_max"], measured["neighbours_max"] if measured else ""])
        out += [table(["P", "cells, largest part", "imbalance (max/mean)", "ghost dofs, largest",
                       "ghost dofs, largest, in the P-rank run", "neighbours, most",
                       "neighbours, most, in the P-rank run"], rows), ""]
        out += ["### Projection (the model below, this mesh: strong scaling)", ""]
        rows = [[r["P"], f"{r['ghost_dofs_max']:,.0f}", r["neighbours_max"],
                 f"{r['forward']['total']:.3g}", f"{r['forward']['halo'] / r['forward']['total']:.0%}",
                 f"{r['forward']['speedup']:.1f}", f"{r['gradient']['total']:.3g}",
                 f"{r['gradient']['speedup']:.1f}", f"{r['gradient']['speedup'] / r['P']:.0%}"] for r in case["strong"]]
        out += [table(["P", "ghost dofs, largest part", "neighbours", "forward s", "forward: communication share",
                       "forward speedup", "value + gradient s", "gradient speedup", "gradient efficiency"], rows), ""]
        out += ["### Projection (weak scaling: the 1-rank dofs per rank, the mesh refined with P)", ""]
        rows = [[r["P"], f"{N * r['P']:,}", f"{r['ghost_dofs_max']:,.0f}", r["neighbours_max"],
                 f"{r['forward']['total']:.3g}", f"{r['forward']['halo'] / r['forward']['total']:.0%}",
                 f"{r['gradient']['total']:.3g}", f"{r['gradient']['efficiency']:.0%}"] for r in case["weak"]]
        out += [table(["P", "dofs per component", "ghost dofs, largest part", "neighbours", "forward s",
                       "forward: communication share", "value + gradient s",
                       "efficiency per step, t(1) · P^(1/d) / t(P)"], rows), ""]
    out += [
        "## The model and its assumptions",
        "",
        "A solve (forward, or value + gradient) on P ranks, one rank per core, takes",
        "",
        "    t(P) = S · ( o + c · N K / P · imbalance(P) )             compute",
        "         + products · ( m(P) α + 8 K g(P) / β )                the halo of each MatMatMult",
        "         + scatters · ( m(P) α + 8 w g(P) / β )                dolfinx's scatters (gradient)",
        "         + reductions · 2 log2(P) α                            allreduces",
        "",
        "- c, o: the measured seconds per dof-step and per step of one rank (fitted on two meshes, "
        "above); N dofs per component, K components, S time steps. The per-dof work (three sparse "
        "products and the vector updates of a step, the slab derivative) is assumed not to change with "
        "P; o (Python, PETSc's per-call work) does not shrink with P and bounds the strong scaling. "
        "Cache effects at small dofs per rank (faster) and the memory bandwidth shared by a node's "
        "cores (slower than one busy core) are not modelled.",
        "- products: MatMatMults per solve, from PETSc's log (3 per step, and the adjoint's); "
        "g(P): the ghost dofs of the busiest rank, m(P): its neighbour ranks, both counted on dolfinx's "
        "partition of the mesh into P parts (checked against the P-rank runs at P = 2–4 in the tables); "
        "imbalance(P): largest part / mean. Messages of a product are sent at once (PETSc's "
        "VecScatter/SF), so the latencies are charged per neighbour, and not overlapped with compute "
        "(an upper bound: PETSc overlaps the off-process part of MatMult with the local part).",
        "- scatters: dolfinx's forward/reverse scatters of a gradient (counted), each of w values per ghost dof.",
        f"- Assumed interconnect (not measured here): latency α = {a['latency_s'] * 1e6:.1f} µs per message, "
        f"bandwidth β = {a['bandwidth_Bps'] / 1e9:.1f} GB/s per rank (a 100–200 Gb/s InfiniBand-class NIC "
        "shared by the ranks of a node that send off-node). On-node messages are cheaper; the model "
        "charges all alike.",
        "- Weak scaling: the mesh is refined so that the dofs per rank stay those of the 1-rank case; h "
        "shrinks by P^(1/d), so the CFL bound makes the steps grow by P^(1/d) (the time per solve "
        "grows even with perfect parallel efficiency); the efficiency is per step: "
        "t(1) · P^(1/d) / t(P). The ghosts are those counted for P parts of this mesh, times "
        "P^((d−1)/d) (a part has P times the dofs, its surface P^((d−1)/d) times the ghosts).",
        "- Not modelled: the point evaluation (P and Pᵀ, one scatter per solve), the set-up (mesh, "
        "forms, partitioning) and I/O; the optimizer's work on θ (identical on every rank, small).",
        "",
    ]
    return "\n".join(out)


def measure(cases: dict, ranks: tuple, repeats: int, projected: tuple) -> list[dict]:
    """The runs (P = ``ranks`` and the small 1-rank mesh) and the counted partitions of each case."""
    raw = []
    for name, case in cases.items():
        runs = {}
        for P in ranks:
            print(f"{name}: {P} rank(s)", flush=True)
            runs[str(P)] = run_worker(case, P, repeats if P in TIME_RANKS else 1)
        print(f"{name}: 1 rank, {case['small']} cells", flush=True)
        runs["small"] = run_worker(dict(case, cells=case["small"], freeze=runs["1"]["steps_per_piece"]), 1, repeats)
        partitions = {str(P): partition_halo(case, P) for P in sorted(set(projected) | set(ranks))}
        raw.append(dict(name=name, case=case, runs=runs, partitions=partitions))
    return raw


def render(raw: list[dict], meta: dict, alpha: float, beta: float, out: Path, doc: Path | None) -> dict:
    """Analyse the raw runs, write scaling.json (with the raw runs) and scaling.md."""
    results = dict(meta, assumed=dict(latency_s=alpha, bandwidth_Bps=beta), cases=[])
    slow = dict(latency_s=SLOW_NETWORK[0], bandwidth_Bps=SLOW_NETWORK[1], cases={})
    for entry in raw:
        runs = {("small" if P == "small" else int(P)): run for P, run in entry["runs"].items()}
        partitions = {int(P): part for P, part in entry["partitions"].items()}
        results["cases"].append(analyse(entry["name"], entry["case"], runs, partitions, alpha, beta))
        results["cases"][-1]["runs"] = entry["runs"]
        slow["cases"][entry["name"]] = analyse(entry["name"], entry["case"], runs, partitions, *SLOW_NETWORK)["strong"][-1]
    results["slow_network"] = slow
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(out / "scaling.json.gz", "wt") as file:  # the raw runs: --from-json re-renders them
        json.dump(results, file, indent=1)
    text = markdown(results)
    (out / "scaling.md").write_text(text)
    if doc:
        doc.write_text(text)
    print(f"wrote {out / 'scaling.md'}, {out / 'scaling.json.gz'}" + (f", {doc}" if doc else ""))
    return results


def raw_from_json(path: Path) -> tuple[list[dict], dict]:
    """The raw runs and partitions kept in a scaling.json, and its date, command, machine, load."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as file:
        saved = json.load(file)
    raw = [dict(name=c["name"], case=c["case"], runs=c["runs"], partitions=c["partitions"]) for c in saved["cases"]]
    return raw, {k: saved[k] for k in ("date", "command", "machine", "load") if k in saved}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small meshes, ranks 1–2, projection to 8")
    parser.add_argument("--repeats", type=int, default=3, help="timed pairs at 1 and 2 ranks (medians)")
    parser.add_argument("--ranks", default=",".join(map(str, RANKS)), help="rank counts to run and log")
    parser.add_argument("--latency", type=float, default=ASSUMED["latency_s"], help="α, seconds per message")
    parser.add_argument("--bandwidth", type=float, default=ASSUMED["bandwidth_Bps"], help="β, bytes per second per rank")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-scaling"), help="scaling.md and scaling.json go here")
    parser.add_argument("--doc", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="re-render a scaling.json's runs (e.g. with other --latency/--bandwidth) without running")
    args = parser.parse_args()
    if args.worker:
        report = worker(json.loads(args.worker), args.repeats)
        if report is not None:
            print(json.dumps(report), flush=True)
        return
    if args.from_json:
        raw, meta = raw_from_json(args.from_json)
        render(raw, meta, args.latency, args.bandwidth, args.out, args.doc)
        return
    import platform

    command = "python -m scripts.bench_scaling" + (" --quick" if args.quick else "")
    meta = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), command=command,
                machine=f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}")
    before = os.getloadavg()[0]
    if args.quick:
        raw = measure(QUICK, (1, 2), 1, (1, 2, 4, 8))
    else:
        raw = measure(CASES, tuple(int(r) for r in args.ranks.split(",")), args.repeats, PROJECTED)
    meta["load"] = [before, os.getloadavg()[0]]
    render(raw, meta, args.latency, args.bandwidth, args.out, args.doc)


if __name__ == "__main__":
    main()
