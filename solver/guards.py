"""Size and time guards: what a command will need, estimated before it allocates or steps.

A command checks here, before it builds a mesh, generates data or writes a net, and refuses with
an ``InputError`` that says what was asked, the estimate and which key to change, when

- the memory per rank exceeds what each rank of the node has (``available_memory``): the mesh
  and its operator, the RK stages and checkpoints of a solve, the MLP's hidden values at the
  velocity nodes, the parameters with the optimizer's vectors, the data, the comparison's points
  and grid;
- the time steps of one solve exceed ``solver.max_steps`` (from the CFL bound at the start, or
  the forced ``solver.dt``; the solver refuses a solve beyond it too, which training takes as an
  unstable trial point), or a forced ``solver.dt`` breaks the CFL bound at the start;
- an exported or converted net needs more memory than the machine has, or an ONNX file over
  protobuf's 2 GiB (``export --depth``, ``predict --depth``, ``plain2resnet --substeps`` and the
  plain net's width); a plain net wider than ``plain2resnet --max-width``, whose d x d
  decompositions would take hours;
- a Monte Carlo of a viscous run (``train.paths``, ``train.sde_steps``, ``train.check_points``;
  ``compare.paths``, ``compare.sde_steps``, ``compare.mc_points``) exceeds ``MAX_PATH_STEPS``
  per rank;
- ``predict --grid`` needs more memory than each rank has.

Estimates only, and on the low side, so that nothing that runs is refused: they catch requests
that are orders of magnitude too large (a 2000³ mesh, 10¹² time steps), not the last 20 %.
numpy and mpi4py only (no dolfinx: a guard must fail in a second).
"""

from __future__ import annotations

import logging
import math
import os
import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mpi4py import MPI

from solver.errors import InputError

log = logging.getLogger("solver")

GiB = 2**30
# Bytes per DG dof of one rank besides the stages and checkpoints: mesh, dofmaps, the operator L
# and its transpose, forms and work vectors (1 rank, one gradient; measured on 2D 32² to 128² and
# 3D 8³ to 24³ boxes, DG1 and DG2, K = 2, 3: 3.3 to 6.1 KiB per dof, within 10 % of this).
BYTES_PER_DOF = 1700
BYTES_PER_NONZERO = 90  # per nonzero of a row of L: (dofs per cell) × (1 + facets per cell)
BYTES_PER_DOF_AND_COMPONENT = 150
BYTES_PER_POINT = 400  # a data, test, comparison or grid point: coordinates, labels, located cell, values
CSV_BYTE_FACTOR = 12  # Python's csv rows (lists of str) per byte of the file
ONNX_LIMIT = 2 * GiB  # protobuf's limit on one serialized message
# export: peak memory per residual block besides its arrays (measured: depth 10⁴ and 10⁵ of a
# width-5 2D run took 0.62 and 4.8 GB, 40 to 46 KB per block), and per byte of its arrays.
BYTES_PER_BLOCK = 40_000
BLOCK_ARRAY_FACTOR = 30
# plain2resnet: measured 2.9 GB and 137 MB of npz for 1.4·10⁵ blocks of an 8-dimensional net
# (l = 10⁴): 12 KB per block besides 30 times its arrays (300 B).
BYTES_PER_FLOW_BLOCK = 12_000
# plain2resnet of a net of width d: per layer a d × d weight, its SVD and two matrix logarithms,
# and the rotation generators of every layer kept. Measured (a 2 -> d -> 2 net, --substeps 4,
# --format npz): max RSS 130 MB at d = 300 and 603 MB at d = 1200, the equivalent of 44 d × d
# float64 arrays; taken as 12 + 2 per layer (16 here), on the low side.
PLAIN_WORK_MATRICES = 12
# plain2resnet: the time of the flow model, per layer a d x d SVD (twice: the rank, the proper
# SVD) and two real Schur decompositions (the rotation logarithms), computed twice (the estimate of
# the ResNet's size, then the conversion). Measured (flow_model of a 2 -> d -> 2 tanh net, one
# process, load average ~5 on 2 cores): 0.79 s at d = 400, 2.8 s at 800, 87 s at 1600, i.e. 2.7
# to 10.6 ns per d³ and layer; the low end is taken. The default width limit, 2000, is then at
# least 1.5 minutes of the command for a 2-layer net (about 4 minutes at the measured 1600 rate).
PLAIN_SECONDS_PER_CUBE = 2.7e-9
MAX_PLAIN_WIDTH = 2000
# predict --grid: bytes per grid point besides 32 per class (measured: max RSS 208 MB and 450 MB
# for --grid 256 and 1024 of a 2D run, K = 2, --method pde: 245 B per point).
GRID_POINT_BYTES = 176
# Monte Carlo (model/stochastic.py): path-steps (points × paths × steps at the fine dt) per rank in
# one run. Measured (scripts-free: stochastic.solve on 64 points, ε = 0.01, Heun, antithetic,
# MLP of width 8 and 32, 4 slabs, load average ~10 on 2 cores): 5e4 to 1e6 path-steps per second;
# 1e8 is then 100 s or more for one check or comparison (the defaults: at most 2000 checked points x
# 512 paths x 16 steps = 1.6e7 for train, 64 x 2000 x 32 = 4.1e6 for compare).
MAX_PATH_STEPS = 1e8


def available_memory(comm: MPI.Comm, shared: bool = True) -> int:
    """Bytes each rank may use: the node's available memory (the least of MemAvailable, the
    cgroup's limit and the address-space limit), split among the ranks on the node if
    ``shared`` (else all of it: rank-0 work while the others wait). The least over the ranks,
    the same on every rank (collective)."""
    local = _available_bytes()
    if shared and comm.size > 1:
        node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        local //= node.size
        node.Free()
    return int(comm.allreduce(local, op=MPI.MIN))


def _available_bytes() -> int:
    available = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not available:
        try:
            available.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            available.append(2**62)
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            cap = int(Path(limit).read_text().split()[0])
            available.append(cap - int(Path(usage).read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        available.append(soft - _virtual_size())
    return max(0, min(available))


def _virtual_size() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def size(n: float) -> str:
    """Bytes as "3.2 GiB"."""
    for unit, scale in (("TiB", 2**40), ("GiB", GiB), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n / 1024:.3g} KiB"


# --- meshes and solves ------------------------------------------------------------------------


@dataclass(frozen=True)
class MeshEstimate:
    """What a mesh of ``cells`` per direction (box) or across the diameter (disk/ball) holds."""

    dim: int
    cells: float  # number of cells (triangles, tetrahedra)
    dofs: float  # DG dofs per component
    nonzeros: float  # nonzeros per row of the operator L
    h_min: float  # the least 2 × inradius (the CFL bound's h)
    velocity_nodes: float  # nodes of the continuous velocity space


def mesh_estimate(domain, cells: int, degree: int) -> MeshEstimate:
    """The size of the mesh ``fem.mesh.create_mesh`` makes of ``domain`` (a ``model.domain``
    Box or Ball): exact for a box; for gmsh's disks and balls measured 1.9 to 2.2 n² triangles,
    2.3 to 3.0 n³ tetrahedra, h_min 0.43 to 0.44 h in 2D and 0.25 to 0.26 h in 3D (h = diameter
    / n), taken as 0.5 h and 0.3 h: a little large, so that the step count is not overestimated."""
    d, n = domain.dim, float(cells)
    if hasattr(domain, "radius"):
        count = 2.0 * n**2 if d == 2 else 2.3 * n**3
        h_min = (0.5 if d == 2 else 0.3) * 2.0 * domain.radius / n
    else:
        count = 2.0 * n**2 if d == 2 else 6.0 * n**3
        h_min = _box_h_min((np.asarray(domain.upper) - np.asarray(domain.lower)) / n)
    per_cell = math.comb(degree + d, d)
    return MeshEstimate(d, count, count * per_cell, per_cell * (d + 2), h_min,
                        (degree * n + 1) ** d)


def _box_h_min(sides: np.ndarray) -> float:
    """2 × the least inradius of the simplices dolfinx splits a cell of the box into (2D: two
    right triangles; 3D: the six Kuhn tetrahedra along the main diagonal)."""
    if len(sides) == 2:
        a, b = sides
        return float(2 * a * b / (a + b + math.hypot(a, b)))
    corners = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    least = math.inf
    for order in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        x = np.zeros((4, 3))
        for i, axis in enumerate(order):
            x[i + 1] = x[i] + sides * corners[axis + 1]
        volume = abs(np.linalg.det(x[1:] - x[0])) / 6
        area = sum(np.linalg.norm(np.cross(*(np.delete(x, i, 0)[1:] - np.delete(x, i, 0)[0]))) / 2
                   for i in range(4))
        least = min(least, 6 * volume / area)
    return float(least)


def initial_speed(config, theta: np.ndarray | None = None, seed: int | None = None,
                  cells: int | None = None, degree: int = 1) -> tuple[float, ...]:
    """max |v| on each piece of time of the configured field (θ given, or the model's seeded
    initial θ), at the piece's midpoint, where the solver takes it: at the velocity nodes of a
    box mesh of ``cells`` (the lattice of spacing h/k: exact), else at 2000 points of Ω.
    InputError if there are more pieces (``field.slabs``) than ``solver.max_steps``."""
    fc = config.field
    if pieces(config) > config.solver.max_steps:  # before the speeds: their cost grows as slabs²
        raise _refuse(config, f"field.slabs = {fc.slabs} means at least one time step per slab, "
                              f"{fc.slabs} per solve, over solver.max_steps = {config.solver.max_steps}; "
                              f"lower field.slabs, or raise solver.max_steps")
    domain = config.domain_object()
    if fc.kind == "rotation":
        return (abs(fc.omega) * domain.radius,) * pieces(config)
    from solver.model.from_config import velocity_model

    model = velocity_model(config, domain)
    if theta is None:
        theta = model.init(fc.seed if seed is None else seed, fc.scale)
    field = model.field(np.asarray(theta, dtype=np.float64))
    lower, upper = np.asarray(domain.lower), np.asarray(domain.upper)
    n = None if cells is None else degree * cells + 1
    if n is not None and not hasattr(domain, "radius") and n**domain.dim <= MAX_NODES:
        axes = [np.linspace(a, b, n) for a, b in zip(lower, upper)]
        x = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
    else:
        x = np.random.default_rng(0).uniform(lower, upper, (2000, domain.dim))
        x = x[domain.contains(x)]
    times = 0.5 * (model.slab_times[:-1] + model.slab_times[1:])
    with np.errstate(all="ignore"):
        speeds = [float(np.max(np.linalg.norm(field(t, x), axis=1), initial=0.0)) for t in times]
    return tuple(v if np.isfinite(v) else math.inf for v in speeds)


MAX_NODES = 200_000  # velocity nodes evaluated for the speed; beyond, a sample
# ‖M⁻¹S‖∞ · h_min² of the SIPG diffusion operator (fem/transport.py) per DG degree, the least
# measured on 2D/3D boxes (also of aspect 3), disks and balls of 3 to 32 cells with h_min of
# ``mesh_estimate`` (k = 1: 83–398, k = 2: 334–1497, k = 3: 925–4258): the viscous step count
# is not overestimated.
DIFFUSION_RATE = {1: 80.0, 2: 320.0, 3: 900.0}


def pieces(config) -> int:
    return config.field.slabs or 1


def time_steps(config, mesh: MeshEstimate, degree: int, speeds: tuple[float, ...]) -> float:
    """The time steps of one solve: from the forced ``solver.dt``, else from the CFL bound at the
    max |v| of each piece of time (``speeds``; at least one step per piece) and, with
    ``field.viscosity`` = ε > 0, the explicit diffusion bound (the rates add, as in
    ``TransportSolver.max_dt``)."""
    T, sc = config.field.T, config.solver
    diffusion = diffusion_rate(config, mesh, degree)
    length = T / len(speeds)
    if sc.dt is not None:
        return len(speeds) * math.ceil(length / sc.dt - 1e-9)
    steps = 0.0
    for speed in speeds:
        with np.errstate(all="ignore"):
            ratio = length * (2 * degree + 1) * speed / (sc.cfl * mesh.h_min)  # length / CFL bound
            ratio += length * diffusion / sc.cfl
        steps += max(1.0, math.ceil(ratio - 1e-9)) if math.isfinite(ratio) else math.inf
    return steps


def diffusion_rate(config, mesh: MeshEstimate, degree: int) -> float:
    """The explicit step's diffusion rate ‖εM⁻¹S‖∞ / 2 (1/time) estimated from h_min (0 if ε = 0)."""
    eps = getattr(config.field, "viscosity", 0.0)
    if not eps:
        return 0.0
    return eps * DIFFUSION_RATE[degree] / mesh.h_min**2 / 2.0


def solve_memory(config, mesh: MeshEstimate, K: int, steps: float, ranks: int) -> float:
    """Bytes per rank of the mesh, its operator and one solve with its gradient: the stage states
    (at most ``solver.stage_memory``; none for "auto", which takes a share of what is left when
    the gradient starts and so never makes a run not fit) and the checkpoints of ``steps`` time
    steps."""
    sc = config.solver
    dofs = mesh.dofs / ranks
    fixed = dofs * (BYTES_PER_DOF + BYTES_PER_NONZERO * mesh.nonzeros + BYTES_PER_DOF_AND_COMPONENT * K)
    budget = 0 if sc.stage_memory == "auto" else sc.stage_memory * 2**20
    stages = min(budget, 3 * K * steps * dofs * 8)
    checkpoints = math.ceil(steps / sc.checkpoint_every) * K * dofs * 8
    return fixed + stages + checkpoints


def _refuse(config, message: str) -> InputError:
    """The refusal, from the config's file (``config.source``) or a file name."""
    return InputError(message, config if isinstance(config, str) else config.source)


def check_steps(config, mesh: MeshEstimate, degree: int, speeds: tuple[float, ...], cells: int,
                what: str, cells_key: str = "mesh.cells", learned: bool = False) -> float:
    """The steps of one solve; InputError if over ``solver.max_steps`` or if a forced dt breaks
    the CFL bound at the start (``learned``: of a trained run's field)."""
    fc, sc = config.field, config.solver
    steps = time_steps(config, mesh, degree, speeds)
    speed = max(speeds)
    if learned:
        cause, keys = "the learned field", "field.T"
    elif fc.kind == "rotation":
        cause, keys = f"at the start, field.omega = {fc.omega:g}", "field.omega"
    else:
        width = f", field.width = {fc.width}" if fc.width is not None else ""
        cause, keys = f"at the start, field.scale = {fc.scale:g}{width}", "field.scale"
    at = (f"max|v| ≈ {speed:.3g} ({cause}), h_min ≈ {mesh.h_min:.3g} "
          f"({cells_key} = {cells}), DG{degree}, solver.cfl = {sc.cfl:g}")
    diffusion = diffusion_rate(config, mesh, degree)
    if diffusion:
        at += (f", field.viscosity = {fc.viscosity:g} (explicit diffusion step "
               f"≈ {sc.cfl / diffusion:.3g}, ~ h²/ε)")
        keys += ", field.viscosity"
    if sc.dt is not None and (speed > 0 or diffusion):
        bound = sc.cfl / ((2 * degree + 1) * speed / mesh.h_min + diffusion)
        if sc.dt > bound * (1 + 1e-9):
            raise _refuse(config, f"{what}: the forced solver.dt = {sc.dt:g} breaks the CFL bound "
                                  f"dt <= {bound:.3g} ({at}); lower solver.dt or remove it "
                                  f"(the CFL bound then sets the step)")
    if steps > sc.max_steps:
        if sc.dt is not None:
            why, change = (f"field.T = {fc.T:g} with the forced solver.dt = {sc.dt:g}",
                           "raise solver.dt (or remove it)")
        else:
            why, change = f"field.T = {fc.T:g}, {at}", f"lower {', '.join(dict.fromkeys(['field.T', keys]))} or {cells_key}"
        raise _refuse(config, f"{what}: an estimated {steps:.3g} time steps per solve exceed "
                              f"solver.max_steps = {sc.max_steps} ({why}); {change}, or raise "
                              f"solver.max_steps")
    return steps


def check_memory(comm: MPI.Comm, config, what: str, terms: list[tuple[str, float]], advice: str,
                 shared: bool = True) -> None:
    """InputError if the sum of ``terms`` ((description, bytes per rank), the largest named in
    the message) exceeds ``available_memory``."""
    total = sum(b for _, b in terms)
    if not total > 0:
        return
    available = available_memory(comm, shared)
    if total <= available:
        return
    largest = sorted(terms, key=lambda t: -t[1])[:2]
    parts = "; ".join(f"{name}: {size(b)}" for name, b in largest if b > 0.05 * total)
    per = f"per rank, more than the {size(available)} available to each rank" if shared else \
        f", more than the {size(available)} available"
    raise _refuse(config, f"{what} needs an estimated {size(total)}{' ' if shared else ''}{per} "
                          f"({parts}); {advice}")


def parameter_memory(n_params: float, lbfgs_memory: int = 10) -> float:
    """θ and the optimizer's vectors: p, its gradient, trial points, 2 × memory curvature pairs."""
    return (2 * lbfgs_memory + 8) * n_params * 8


def _width(config) -> str:
    """The key that sets the hidden width, as a message shows it."""
    fc = config.field
    return f"field.width = {fc.width}" if fc.kind != "mlp1" else f'field.kind = "mlp1": width {config.dim}'


def mlp_memory(config, mesh: MeshEstimate, ranks: int) -> float:
    """The MLP's hidden values at this rank's velocity nodes (value and its derivative)."""
    width = config.field.width or (config.dim if config.field.kind == "mlp1" else 0)
    return 4 * width * mesh.velocity_nodes / ranks * 8


def n_theta(config) -> int:
    from solver.model.from_config import velocity_model
    from solver.model.velocity import LEARNED_KINDS

    if config.field.kind not in LEARNED_KINDS:
        return 0
    return velocity_model(config, config.domain_object()).n_params


# --- the commands ------------------------------------------------------------------------------


def check_data(comm: MPI.Comm, config) -> None:
    """The data set's memory before it is generated or read: ``data.points``, or the size of the
    CSV file (each rank holds all of it; a CSV byte takes about ``CSV_BYTE_FACTOR`` bytes while
    it is parsed). Collective."""
    dc = config.data
    terms = [(f"the data (data.points = {dc.points})", (dc.points or 0) * BYTES_PER_POINT)]
    path = dc.params.get("path")
    if path and Path(path).is_file():
        bytes_ = Path(path).stat().st_size
        terms.append((f"reading data.path = {path} ({size(bytes_)})", bytes_ * CSV_BYTE_FACTOR))
    check_memory(comm, config, "train", terms, "lower data.points or use a smaller data file")


def check_monte_carlo(comm: MPI.Comm, config, what: str, points: int, paths: int, steps: int,
                      keys: str) -> None:
    """InputError if a Monte Carlo of ``points`` × ``paths`` paths × ``steps`` steps exceeds
    ``MAX_PATH_STEPS`` per rank (the points' chunks are shared out; ``keys`` name what to lower).
    Nothing for an inviscid field (no Monte Carlo)."""
    if not getattr(config.field, "viscosity", 0.0):
        return
    work = float(points) * paths * steps
    per_rank = work / min(comm.size, max(1, points))
    if per_rank > MAX_PATH_STEPS:
        raise _refuse(config, f"{what}: the Monte Carlo of the viscous flow (field.viscosity = "
                              f"{config.field.viscosity:g}) takes an estimated {work:.3g} path-steps "
                              f"({points} point(s) x {paths} paths x {steps} steps), {per_rank:.3g} per "
                              f"rank, over the limit of {MAX_PATH_STEPS:.3g} per rank (at most about 1e6 "
                              f"path-steps per second were measured); lower {keys}, or run on more ranks")


def check_predict(comm: MPI.Comm, run: str, config, grid_points: float, num_classes: int,
                  method: str, depth: int | None) -> None:
    """``predict``: the memory of the ``--grid`` map (``grid_points`` points, kept in Ω and data
    coordinates with their logits and probabilities) and of the ``--method resnet`` net of
    ``depth`` blocks (collective)."""
    if grid_points:
        check_memory(comm, run, "predict --grid",
                     [(f"the grid ({grid_points:.3g} points)", grid_points * (GRID_POINT_BYTES + 32 * num_classes))],
                     "lower --grid")
    if method == "resnet" and depth is not None and config.field.kind in ("mlp", "mlp1"):
        width = config.field.width or config.dim
        block = 4 * (2 * width * config.dim + width + config.dim) * 8  # at most 4 evaluations (rk4)
        _check_net(comm, run, f"predict --depth {depth}", depth, block, BYTES_PER_BLOCK, False, "lower --depth")


def check_plain_width(comm: MPI.Comm, source: str, width: int, layers: int) -> None:
    """``plain2resnet``: the d × d matrices of a net of width ``width`` (d >= width) and
    ``layers`` layers, before their SVDs and logarithms are computed (collective)."""
    matrices = PLAIN_WORK_MATRICES + 2 * layers
    check_memory(comm, source, f"plain2resnet of a net of width {width}",
                 [(f"{matrices} matrices of {width} x {width}", matrices * float(width) ** 2 * 8)],
                 "the flow model embeds every layer in d x d (d >= the widest layer): use a narrower net",
                 shared=False)


def check_plain_cost(source: str, width: int, layers: int, max_width: int) -> None:
    """``plain2resnet``: InputError if the net's width exceeds ``max_width`` (``--max-width``),
    with the estimated time of its d x d decompositions (rank-local: the same on every rank for
    the same arguments)."""
    if width <= max_width:
        return
    seconds = 2 * layers * float(width) ** 3 * PLAIN_SECONDS_PER_CUBE
    hours = f"{seconds / 3600:.3g} hours" if seconds >= 3600 else f"{seconds / 60:.3g} minutes"
    raise _refuse(source, f"plain2resnet of a net of width {width} ({layers} layers): the flow model "
                          f"decomposes a {width} x {width} matrix per layer (SVDs, rotation logarithms), "
                          f"an estimated {hours} or more, over --max-width {max_width}; use a narrower net, "
                          f"or pass --max-width {width} to run it anyway")


def check_train(comm: MPI.Comm, config, num_classes: int, theta: np.ndarray | None = None) -> dict:
    """Memory and time steps of ``train`` on the config's mesh, before the data, the mesh or the
    solver are made (collective). Returns the estimates (for the log)."""
    what = "train"
    mc, tc, dc = config.mesh, config.train, config.data
    mesh = mesh_estimate(config.domain_object(), mc.cells, mc.degree)
    if mesh.dofs > tc.max_dofs:
        raise _refuse(config, f"{what}: mesh.cells = {mc.cells} (DG{mc.degree}) gives about "
                              f"{mesh.dofs:.3g} dofs per component, over train.max_dofs = "
                              f"{tc.max_dofs}; lower mesh.cells or mesh.degree, or raise train.max_dofs")
    points = dc.points if dc.points is not None else 0
    n_params = n_theta(config) + num_classes * (config.dim + 1)
    early = [(f"the parameters ({_width(config)}, field.slabs = "
              f"{config.field.slabs}: {n_params:.3g})", parameter_memory(n_params, tc.memory)),
             (f"the data (data.points = {points})", points * BYTES_PER_POINT)]
    check_memory(comm, config, what, early, "lower field.width, field.slabs or data.points")
    checked = min(points, tc.check_points) if points else 1  # at least this many points are checked
    check_monte_carlo(comm, config, what, checked, tc.paths, tc.sde_steps,
                      "train.paths, train.sde_steps or train.check_points")
    speed = initial_speed(config, theta, seed=tc.seed, cells=mc.cells, degree=mc.degree)
    steps = check_steps(config, mesh, mc.degree, speed, mc.cells, what)
    if config.solver.dt is not None and tc.adapt and max(speed) > 0:
        finer = math.ceil(1.5 * mc.cells) | 1  # certify.Resolution.raised
        bound = config.solver.cfl * mesh.h_min * mc.cells / finer / ((2 * mc.degree + 1) * max(speed))
        if config.solver.dt > bound:
            log.warning("warning: the forced solver.dt = %g breaks the CFL bound (about %.3g) of %d cells, "
                        "where certification may refine the mesh (train.adapt): the run would then stop "
                        "with an error; lower solver.dt or set train.adapt = false",
                        config.solver.dt, bound, finer)
    terms = early + [
        (f"the mesh and its solves (mesh.cells = {mc.cells} in {mesh.dim}D, DG{mc.degree}: "
         f"{mesh.cells:.3g} cells, {mesh.dofs:.3g} dofs x {num_classes} components, "
         f"{steps:.3g} time steps)", solve_memory(config, mesh, num_classes, steps, comm.size)),
        (f"the velocity at the mesh nodes ({_width(config)})",
         mlp_memory(config, mesh, comm.size)),
    ]
    check_memory(comm, config, what, terms,
                 "lower mesh.cells, mesh.degree, field.width or data.points, or run on more nodes")
    return dict(dofs=mesh.dofs, steps=steps, speed=speed)


def check_compare_run(comm: MPI.Comm, config, theta: np.ndarray, num_classes: int,
                      resolutions: list[tuple[int, int]]) -> None:
    """Memory and time steps of ``compare RUN``: the learned field θ's solves on each of the
    ``resolutions`` (cells, degree): the run's last and ``compare.cells/degree`` (collective)."""
    dc = config.data
    for cells, degree in resolutions:
        speed = initial_speed(config, theta, cells=cells, degree=degree)
        mesh = mesh_estimate(config.domain_object(), cells, degree)
        steps = check_steps(config, mesh, degree, speed, cells, f"compare RUN on {cells} cells, DG{degree}",
                            "compare.cells", learned=True)
        check_memory(comm, config, "compare RUN", [
            (f"the mesh and its solve ({cells} cells per direction in {mesh.dim}D, DG{degree}: "
             f"{mesh.dofs:.3g} dofs x {num_classes} components, {steps:.3g} time steps)",
             solve_memory(config, mesh, num_classes, steps, comm.size)),
            (f"the data (data.points = {dc.points})", (dc.points or 0) * BYTES_PER_POINT),
        ], "lower compare.cells or compare.degree")


def check_compare(comm: MPI.Comm, config, refine: list[int] | tuple[int, ...] = ()) -> dict:
    """Memory and time steps of ``compare CONFIG`` on the config's mesh and the finest of
    ``refine`` (collective)."""
    what = "compare"
    mc, cc = config.mesh, config.compare
    d = config.dim
    if config.field.kind in ("mlp", "mlp1"):
        early = [(f"the field ({_width(config)}, field.slabs = {config.field.slabs})",
                  4 * n_theta(config) * 8)]
        check_memory(comm, config, what, early, "lower field.width or field.slabs")
    grid = float(cc.grid) ** d
    sample = [(f"the points (compare.points = {cc.points})", cc.points * BYTES_PER_POINT),
              (f"the grid (compare.grid = {cc.grid} per direction: {grid:.3g} points)",
               grid * BYTES_PER_POINT)]
    check_memory(comm, config, what, sample, "lower compare.grid or compare.points")
    mc_points = cc.mc_points if cc.points_file else min(cc.mc_points, cc.points)
    check_monte_carlo(comm, config, what, mc_points, cc.paths, cc.sde_steps,
                      "compare.paths, compare.sde_steps or compare.mc_points")
    K = config.terminal_object().num_components
    estimates = {}
    for cells in sorted({mc.cells, *refine}):
        speed = initial_speed(config, cells=cells, degree=mc.degree)
        mesh = mesh_estimate(config.domain_object(), cells, mc.degree)
        where = what if cells == mc.cells else f"compare --refine {cells}"
        steps = check_steps(config, mesh, mc.degree, speed, cells, where,
                            "mesh.cells" if cells == mc.cells else "the --refine/compare.refine cells")
        terms = sample + [
            (f"the mesh and its solve (mesh.cells = {cells} in {d}D, DG{mc.degree}: "
             f"{mesh.cells:.3g} cells, {mesh.dofs:.3g} dofs x {K} components, {steps:.3g} time steps)",
             2 * solve_memory(config, mesh, K, steps, comm.size)),  # with the reference function
            (f"the velocity at the mesh nodes ({_width(config)})",
             mlp_memory(config, mesh, comm.size)),
        ]
        check_memory(comm, config, where, terms,
                     "lower mesh.cells, the --refine/compare.refine cells or mesh.degree")
        estimates[cells] = dict(dofs=mesh.dofs, steps=steps, speed=speed)
    return estimates


def export_block_bytes(config, scheme: str) -> float:
    """The arrays of one exported residual block of the config's MLP field, in bytes: the
    field's weights once per evaluation of the block (euler 1, midpoint 2, rk4 4; an unknown
    scheme counts 4, the name is checked where the net is built). 0 for fields that are not MLPs."""
    if config.field.kind not in ("mlp", "mlp1"):
        return 0.0
    evaluations = {"euler": 1, "midpoint": 2, "rk4": 4}.get(scheme, 4)
    width = config.field.width or config.dim  # "mlp1": exported as W2 = I, width d
    return evaluations * (2 * width * config.dim + width + config.dim) * 8


def check_export(comm: MPI.Comm, run: str, depth: int, block_bytes: float, onnx: bool,
                 api: bool = False) -> None:
    """Memory of an exported ResNet of the run directory ``run``: ``depth`` blocks of
    ``block_bytes`` of arrays each, and the size of its ONNX file (collective). ``api``: the
    message names ``FlowClassifier.export_onnx``'s depth, not the command line's flags."""
    if api:
        _check_net(comm, run, f"export_onnx(depth={depth})", depth, block_bytes, BYTES_PER_BLOCK, onnx,
                   "lower depth (midpoint or rk4 blocks need fewer)", other_format="")
        return
    _check_net(comm, run, f"export --depth {depth}", depth, block_bytes, BYTES_PER_BLOCK, onnx,
               "lower --depth (midpoint or rk4 blocks need fewer)")


def check_flow_resnet(comm: MPI.Comm, source: str, substeps: int, blocks: float,
                      block_bytes: float, onnx: bool) -> None:
    """The same for ``plain2resnet`` of the net in the file ``source``: ``blocks`` blocks of
    ``block_bytes`` each (collective)."""
    _check_net(comm, source, f"plain2resnet --substeps {substeps}", blocks, block_bytes,
               BYTES_PER_FLOW_BLOCK, onnx, "lower --substeps")


def _check_net(comm, config, what: str, blocks: float, block_bytes: float, overhead: float,
               onnx: bool, advice: str, other_format: str = ", or --format npz") -> None:
    arrays = blocks * block_bytes
    if onnx and arrays > ONNX_LIMIT:
        raise _refuse(config, f"{what}: an ONNX file of an estimated {size(arrays)} ({blocks:.3g} "
                              f"blocks) exceeds protobuf's limit of 2 GiB; {advice}{other_format}")
    check_memory(comm, config, what,
                 [(f"{blocks:.3g} blocks", blocks * (overhead + BLOCK_ARRAY_FACTOR * block_bytes))],
                 advice, shared=False)
