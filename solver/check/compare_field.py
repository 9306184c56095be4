"""The PDE against the characteristics: u_h(0, ·) from the FE solver and f(q(T; ·)) (eq. 6).

One comparison solves the transport problem on the configured mesh and measures, against the
method of characteristics (an independent ODE solver at tolerance ~1e-10):

- the max difference at random points of Ω and on a uniform grid,
- the L2 difference over Ω, by quadrature of u_h − I(u_ref), where I(u_ref) interpolates the
  characteristics solution into nodal DG of degree k + 1 (its own error is O(h^{k+2}), an order
  below u_h's),
- for a field with an exact flow (rigid rotation), the same against the exact solution.

A refinement study repeats this over a list of meshes and fits the observed orders.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import ufl
from mpi4py import MPI

from dolfinx import fem

from solver.config import Config
from solver.convergence import fitted_order, observed_orders
from solver.errors import InputError
from solver.fem.mesh import create_mesh
from solver.fem.pointeval import evaluate_everywhere, grid_evaluator
from solver.fem.schemes import make_solver
from solver.fem.transport import ForwardResult, TransportSolver
from solver.model import characteristics, stochastic
from solver.model.domain import Ball, Domain
from solver.model.terminal import Terminal
from solver.model.from_config import velocity_model
from solver.model.velocity import Field, RigidRotation
from solver.owned import Owned
from solver.parallel import gather_rows

log = logging.getLogger("solver")

# Tolerance of the characteristics reference; its error must stay far below the FE error.
REFERENCE_RTOL = 1e-10
REFERENCE_ATOL = 1e-12


def build_field(config: Config, domain: Domain, theta: np.ndarray | None = None):
    """The configured velocity field: an MLP (eq. 2 or its one-layer form, random θ of the given seed unless ``theta``
    is passed) or a rigid rotation."""
    fc = config.field
    if fc.kind == "rotation":
        return RigidRotation(omega=fc.omega, center=tuple(domain.center), T=fc.T, dim=domain.dim)
    model = velocity_model(config, domain)
    if theta is None:
        theta = model.init(fc.seed, fc.scale)
    return model.field(theta)


def exact_solution(field, terminal):
    """u(0, ·) = f(q(T; ·)) in closed form, if the field's flow is known exactly, else None."""
    if hasattr(field, "exact_flow"):
        return lambda x: terminal(field.exact_flow(x, 0.0, field.T))
    return None


def reference_function(solver: TransportSolver, field, terminal, degree: int) -> list[fem.Function]:
    """The characteristics solution interpolated into nodal DG_degree, one function per component.

    Each rank integrates the characteristics from its own interpolation points (serial per
    rank): no communication, and the cost is that of the local points.
    """
    V = fem.functionspace(solver.mesh, ("DG", degree))
    x = V.tabulate_dof_coordinates()[:, : solver.dim]
    exact = exact_solution(field, terminal)
    if exact is not None:
        values = exact(x)
    else:
        q = characteristics.flow(field, x, 0.0, field.T, rtol=REFERENCE_RTOL, atol=REFERENCE_ATOL)
        values = terminal(q)
    functions = []
    for c in range(values.shape[1]):
        f = fem.Function(V)
        f.x.array[:] = values[:, c]
        functions.append(f)
    return functions


def l2_norm(expression, quadrature_degree: int) -> float:
    """‖expression‖_L2(Ω), summed over the ranks of its mesh (collective)."""
    domain = ufl.domain.extract_unique_domain(expression)
    dx = ufl.Measure("dx", domain=domain, metadata={"quadrature_degree": quadrature_degree})
    local = fem.assemble_scalar(fem.form(expression**2 * dx))
    return float(np.sqrt(domain.ufl_cargo().comm.allreduce(local, op=MPI.SUM)))


@dataclass
class Comparison:
    """One mesh: the FE solution and its differences to the characteristics."""

    cells: int
    h_min: float
    dofs: int
    steps: int
    l2: float  # ‖u_h − u_ref‖_L2 over all components
    l2_relative: float
    max_points: float  # max |u_h − u_ref| at the random points
    max_grid: float  # max |u_h − u_ref| on the uniform grid
    l2_exact: float | None  # against the closed-form solution, where there is one
    seconds_solve: float
    seconds_reference: float

    def row(self) -> dict:
        return dict(self.__dict__)


@dataclass
class MeshComparison(Owned):
    """A comparison on one mesh with what it computed, for plots and output.

    Owns ``solver``: call :meth:`destroy` when done.
    """

    comparison: Comparison
    solver: TransportSolver
    result: ForwardResult
    field: Field
    terminal: Terminal
    fe_points: np.ndarray  # u_h(0) at the points, shape=(n, K)
    ref_points: np.ndarray  # the characteristics' u(0) there
    fe_grid: np.ndarray  # u_h(0) on the grid, shape=(m, K)
    ref_grid: np.ndarray

    def destroy(self) -> None:
        self.solver.destroy()


def solve_and_compare(
    comm: MPI.Comm, config: Config, cells: int, points: np.ndarray, grid: np.ndarray
) -> MeshComparison:
    """Solve on a mesh of ``cells`` and measure the differences to the characteristics at
    ``points``, on ``grid`` and in L2 (collective). The caller destroys the result."""
    domain = config.domain_object()
    terminal = config.terminal_object()
    field = build_field(config, domain)
    solver = make_solver(create_mesh(comm, domain, cells), config.solver, degree=config.mesh.degree,
                         num_components=terminal.num_components, viscosity=config.field.viscosity)
    # Not a with block: the solver outlives this call, returned in the MeshComparison whose
    # owner destroys it; freed here only if the comparison is not made.
    try:
        t0 = time.perf_counter()
        result = solver.solve(field, terminal, keep=False)
        seconds_solve = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        fe_points = evaluate_everywhere(solver.V, result.u0, points, "compare.points")
        # The grid is internal: moved off facets (not reported), the reference at the moved points.
        on_grid = grid_evaluator(solver.V, grid, "compare.grid")
        fe_grid = gather_rows(comm, np.stack([on_grid(u) for u in result.u0], axis=1))
        grid = on_grid.points
        ref_points, ref_grid = (
            characteristics.solve(comm, field, terminal, x, rtol=REFERENCE_RTOL, atol=REFERENCE_ATOL).u0
            for x in (points, grid)
        )
        l2, l2_relative, l2_exact, seconds_reference = l2_differences(solver, field, terminal, result)
        comparison = Comparison(
            cells=cells,
            h_min=solver.h_min,
            dofs=solver.num_dofs_global,
            steps=result.trajectory.num_steps,
            l2=l2,
            l2_relative=l2_relative,
            max_points=float(np.max(np.abs(fe_points - ref_points), initial=0.0)),
            max_grid=float(np.max(np.abs(fe_grid - ref_grid), initial=0.0)),
            l2_exact=l2_exact,
            seconds_solve=seconds_solve,
            seconds_reference=seconds_reference,
        )
        return MeshComparison(
            comparison, solver, result, field, terminal, fe_points, ref_points, fe_grid, ref_grid
        )
    except BaseException:
        solver.destroy()
        raise


def monte_carlo(comm: MPI.Comm, config: Config, points: np.ndarray) -> stochastic.MonteCarloResult:
    """The Monte Carlo of the reflected SDE at the first ``compare.mc_points`` of ``points``
    (collective; ``compare.paths`` paths, ``compare.sde_steps`` steps, seeded by ``compare.seed``)."""
    domain = config.domain_object()
    cc = config.compare
    return stochastic.solve(comm, build_field(config, domain), domain, config.terminal_object(),
                            points[: cc.mc_points], config.field.viscosity, paths=cc.paths,
                            steps=cc.sde_steps, seed=cc.seed)


def monte_carlo_agreement(fe_points: np.ndarray, mc: stochastic.MonteCarloResult,
                          coarser: np.ndarray | None = None) -> dict:
    """u_h(0) at the Monte Carlo's points (the first rows of ``fe_points``) against its mean:
    the largest difference, the largest bound, and the fraction of points and components within
    the bound (``agree``: all of them). The bound is 3 SE + bias, plus, if the coarser mesh's
    u_h at the points is given, |u_h − u_coarser| (an estimate of the PDE's own error, which
    matters where f(X_T) hardly varies and SE and bias are ~0)."""
    n = len(mc.u0)
    diff = np.abs(fe_points[:n] - mc.u0)
    bound = mc.bound if coarser is None else mc.bound + np.abs(fe_points[:n] - coarser[:n])
    within = diff <= bound
    return dict(points=len(mc.u0), paths=mc.paths, sde_steps=mc.steps,
                max_difference=float(diff.max(initial=0.0)),
                max_standard_error=float(mc.standard_error.max(initial=0.0)),
                max_bias=float(mc.bias.max(initial=0.0)), max_bound=float(bound.max(initial=0.0)),
                within=float(within.mean()) if within.size else 1.0, agree=bool(within.all()))


def l2_differences(
    solver: TransportSolver, field, terminal, result: ForwardResult
) -> tuple[float, float, float | None, float]:
    """‖u_h − I(u_ref)‖, relative to ‖I(u_ref)‖, the same against the closed-form solution (or
    None), and the seconds the reference took (collective)."""
    t0 = time.perf_counter()
    k = solver.degree
    reference = reference_function(solver, field, terminal, k + 1)
    seconds = solver.comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
    q = 2 * (k + 1)
    l2 = float(np.sqrt(sum(l2_norm(u - r, q) ** 2 for u, r in zip(result.u0, reference))))
    norm = float(np.sqrt(sum(l2_norm(r, q) ** 2 for r in reference)))
    # Where the flow is known exactly, the reference *is* the exact solution.
    l2_exact = l2 if exact_solution(field, terminal) is not None else None
    return l2, l2 / norm if norm > 0 else l2, l2_exact, seconds


def compare_on_mesh(
    comm: MPI.Comm, config: Config, cells: int, points: np.ndarray, grid: np.ndarray
) -> Comparison:
    """The numbers of :func:`solve_and_compare` (collective); nothing is kept."""
    with solve_and_compare(comm, config, cells, points, grid) as run:
        return run.comparison


def read_points(path: str, domain: Domain) -> np.ndarray:
    """Points from a CSV file (one per row, ``dim`` columns, an optional header), checked to be
    finite and in Ω. Every rank reads the same file, so every rank raises alike."""
    from solver.model.data import read_points as read_csv_points

    points, _, lines = read_csv_points(path, domain.dim, f"(x1..x{domain.dim}: Ω is {domain.dim}-dimensional)")
    outside = np.flatnonzero(~domain.contains(points))
    if outside.size:
        raise InputError(
            f"{outside.size} of {len(points)} points lie outside Ω ({domain}), e.g. lines "
            f"{lines[outside[:5]].tolist()}",
            path,
        )
    return points


def sample_points(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """The comparison's points (from ``compare.points_file``, else random in Ω, seeded) and its
    uniform grid; the same on every rank."""
    domain = config.domain_object()
    lower, upper = np.asarray(domain.lower), np.asarray(domain.upper)
    center, half = 0.5 * (lower + upper), 0.5 * (upper - lower)
    if config.compare.points_file:
        points = read_points(config.compare.points_file, domain)
    else:
        # Rejection sampling in the bounding box, kept off ∂Ω so that every point is in Ω.
        rng = np.random.default_rng(config.compare.seed)
        points = np.empty((0, domain.dim))
        while len(points) < config.compare.points:
            x = center + 0.99 * half * rng.uniform(-1, 1, (2 * config.compare.points + 16, domain.dim))
            x = x[domain.contains(x) & (domain.cutoff(x) > 1e-4)]
            points = np.concatenate([points, x])
        points = points[: config.compare.points]
    return points, off_facets(domain, domain.grid(config.compare.grid))


def off_facets(domain: Domain, grid: np.ndarray) -> np.ndarray:
    """Grid points (shape=(n, d)) moved off mesh facets and into the mesh.

    A grid aligned with the mesh puts points on facets, where a DG function has two values and
    which one is seen would depend on the partition: the points are pulled towards the centre
    and shifted by a small generic offset, with different factors per axis (one factor would
    keep points on rays from the centre, and so on the diagonals of a structured mesh). The
    shifts (~1e-4 of the diameter) are above DOLFINx's tolerance of point location (1e-6: with
    shifts of 1e-6 of the diameter, 371 of the 6561 points of the moons plot grid stayed that
    close to a facet) and far below anything a picture or a comparison can see; the few points
    that still land on a facet by chance are moved by ``pointeval.grid_evaluator``. A polygonal
    mesh of a disk/ball misses thin slivers by ∂Ω, so there the grid keeps to 97% of the radius.
    """
    lower, upper = np.asarray(domain.lower), np.asarray(domain.upper)
    center = 0.5 * (lower + upper)
    if isinstance(domain, Ball):
        grid = grid[np.linalg.norm(grid - np.asarray(domain.center), axis=1) <= 0.97 * domain.radius]
    offset = 1e-4 * domain.diameter * np.array([0.3137, 0.1729, 0.2281])[: domain.dim]
    shrink = 1.0 - 1e-3 * np.array([1.0, 1.37, 1.71])[: domain.dim]
    return center + (grid - center) * shrink + offset


def refinement_study(comm: MPI.Comm, config: Config, cells_list: list[int]) -> dict:
    """Compare on each mesh of ``cells_list`` and fit the observed orders (collective)."""
    if len(cells_list) < 2 or any(b <= a for a, b in zip(cells_list, cells_list[1:])):
        raise InputError(f"compare.refine must be >= 2 increasing cell counts, got {cells_list}")
    points, grid = sample_points(config)
    # ε > 0: the characteristics are the inviscid limit, not the solution; the Monte Carlo of
    # the reflected SDE is the reference at its points (computed once for all meshes).
    mc = monte_carlo(comm, config, points) if config.field.viscosity > 0 else None
    rows, coarser = [], None
    for cells in cells_list:
        with solve_and_compare(comm, config, cells, points, grid) as run:  # one mesh at a time
            c, fe_points = run.comparison, run.fe_points
        log.info(
            "refine: cells %4d  dofs %8d  steps %5d  L2 %.3e  max %.3e  (%.2f s)",
            c.cells, c.dofs, c.steps, c.l2, c.max_points, c.seconds_solve,
        )
        rows.append(c.row())
        if mc is not None:
            rows[-1]["monte_carlo"] = monte_carlo_agreement(fe_points, mc, coarser)
            coarser = fe_points
    # Orders against the nominal size diameter/cells: h_min of unstructured (gmsh) meshes
    # does not halve exactly when cells doubles.
    h = np.array([1.0 / r["cells"] for r in rows])
    l2 = np.array([r["l2"] for r in rows])
    mx = np.array([r["max_points"] for r in rows])
    orders_l2 = observed_orders(h, l2)
    orders_max = observed_orders(h, mx)
    for r, o2, om in zip(rows[1:], orders_l2, orders_max):
        r["order_l2"], r["order_max"] = float(o2), float(om)
    return dict(
        rows=rows,
        fitted_order_l2=fitted_order(h, l2),
        fitted_order_max=fitted_order(h, mx),
        degree=config.mesh.degree,
    )


def format_table(study: dict) -> str:
    """The refinement study as a fixed-width table."""
    lines = [
        f"{'cells':>6} {'h_min':>9} {'dofs':>9} {'steps':>6} {'L2 error':>10} {'order':>6} "
        f"{'max error':>10} {'order':>6} {'solve s':>8}"
    ]
    for r in study["rows"]:
        o2 = f"{r['order_l2']:6.2f}" if "order_l2" in r else f"{'-':>6}"
        om = f"{r['order_max']:6.2f}" if "order_max" in r else f"{'-':>6}"
        lines.append(
            f"{r['cells']:6d} {r['h_min']:9.3e} {r['dofs']:9d} {r['steps']:6d} {r['l2']:10.3e} "
            f"{o2} {r['max_points']:10.3e} {om} {r['seconds_solve']:8.2f}"
        )
    lines.append(
        f"fitted order (DG{study['degree']}): L2 {study['fitted_order_l2']:.2f}, "
        f"max {study['fitted_order_max']:.2f}"
    )
    if "monte_carlo" in study["rows"][0]:
        mc = study["rows"][0]["monte_carlo"]
        lines.append(f"viscous: the columns above are against the inviscid characteristics; against "
                     f"the Monte Carlo ({mc['points']} points, {mc['paths']} paths, {mc['sde_steps']} steps):")
        lines.append("(bound: 3 SE + bias + |u_h − u_h of the previous mesh|; on the first, 3 SE + bias)")
        lines.append(f"{'cells':>6} {'max |u_h - MC|':>15} {'max bound':>13} {'within':>7}")
        for r in study["rows"]:
            m = r["monte_carlo"]
            lines.append(f"{r['cells']:6d} {m['max_difference']:15.3e} {m['max_bound']:13.3e} "
                         f"{100 * m['within']:6.1f}%")
    return "\n".join(lines)
