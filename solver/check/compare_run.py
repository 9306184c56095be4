"""A trained run against the method of characteristics: does the PDE predict what the flow does?

For the learned θ and output layer (A, b), the FE prediction u_h(0, X_i) and the
characteristics' f(q(T; X_i)) = A q(T; X_i) + b (eq. 6) are compared on the training and test
points: the fraction of equal predicted labels and the max difference of the logits. For a
viscous run (ε > 0) the reference is the Monte Carlo of its SDE with its error bound, as in
training's certification (``learn/certify.py``; the same numbers as the final check of training
when all points were checked).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from mpi4py import MPI

from solver.model import characteristics
from solver.config import load_config
from solver.errors import InputError
from solver.learn import certify
from solver.learn.certify import Resolution
from solver.learn.train import Problem
from solver.parallel import on_rank0
from solver.rundir import store

log = logging.getLogger("solver")


def load_parameters(run: Path) -> np.ndarray:
    """The learned p = (θ, A, b) of a run directory (its theta.npz)."""
    return store.read_parameters(Path(run) / store.THETA).p


def resnet_depth_tables(model, theta, A, b, X, field) -> dict:
    """The exported ResNet at depths N against the characteristics, per block scheme (rank-local).

    Depths are multiples of the slab count, where every block lies in one slab and a scheme
    keeps its order (``resnet/net.py``).
    """
    from solver.resnet.net import OutputLayer, depth_table

    q_T = characteristics.flow(field, X, 0.0, model.T, rtol=1e-12, atol=1e-13)
    output = OutputLayer("linear", A, b)
    L = model.slabs
    tables = {}
    for scheme, depths in (("euler", [L * 2**i for i in range(7)]), ("midpoint", [L * 2**i for i in range(5)])):
        rows = depth_table(model, theta, X, q_T, depths, scheme, output)
        tables[scheme] = [dict(depth=r.depth, max_error=r.max_error, order=r.order,
                               label_agreement=r.label_agreement) for r in rows]
        log.info("exported ResNet (%s blocks) against the characteristics, test points:", scheme)
        log.info("  %6s %12s %7s %16s", "depth", "max |x_N − q(T)|", "order", "label agreement")
        for r in rows:
            log.info("  %6d %12.3e %7.2f %15.2f%%", r.depth, r.max_error, r.order, 100 * r.label_agreement)
    return tables


def resnet_against_pde(model, theta, A, b, X, fe_logits, layer=None, q=None, features=None) -> dict:
    """The exported ResNet's labels and logits against the FE prediction u_h(0, X) (rank-local).
    With a learned input layer (``layer``, its ``q``) the net is the exported one whole: it takes
    the raw ``features`` of the points X = layer(q, features)."""
    from solver.resnet.net import OutputLayer, forward, resnet_from_velocity

    rows = {}
    for scheme, depth in (("euler", 16 * model.slabs), ("midpoint", 4 * model.slabs)):
        net = resnet_from_velocity(model, theta, depth, scheme, output=OutputLayer("linear", A, b),
                                   input_layer=layer, input_q=q)
        out = forward(net, X if layer is None else features)
        rows[f"{scheme}-{depth}"] = dict(
            label_agreement=float(np.mean(out.argmax(1) == fe_logits.argmax(1))) if len(X) else float("nan"),
            max_logit_difference=float(np.max(np.abs(out - fe_logits), initial=0.0)),
        )
        log.info("exported ResNet (%s, %d blocks) vs PDE on the test points: labels agree %.2f%%, "
                 "max logit difference %.3e", scheme, depth, 100 * rows[f"{scheme}-{depth}"]["label_agreement"],
                 rows[f"{scheme}-{depth}"]["max_logit_difference"])
    return rows


def run_agreement(comm: MPI.Comm, problem, p: np.ndarray) -> tuple[dict, np.ndarray]:
    """PDE (on ``problem``'s mesh) against the characteristics (ε > 0: the Monte Carlo) on the
    train and test points at the parameters ``p``. COLLECTIVE.

    Returns:
        The numbers ``compare RUN`` reports, and the PDE's logits at all the test points
        (every rank holds them all), shape=(n_test, K).
    """
    from solver.fem.pointeval import evaluate_everywhere

    J = problem.J
    evaluation = J.evaluate(p, everywhere=True)
    problem.sync()  # a learned input layer: the data points at p's
    theta, A, b = J.split(p)
    field = problem.model.field(theta)
    logits = lambda x: x @ A.T + b  # noqa: E731 (the output layer f of eq. 13)
    result = dict(mesh_cells=problem.resolution.cells, degree=problem.resolution.degree,
                  refinements=len(problem.resolution.marks),
                  dofs=problem.solver.num_dofs_global, time_steps=int(sum(evaluation.steps)))
    sets = (("train", problem.dataset.X_train, problem.dataset.y_train),
            ("test", problem.dataset.X_test, problem.dataset.y_test))
    epsilon, tc = problem.config.field.viscosity, problem.config.train
    if epsilon > 0:  # one run over both sets, as training's check (train.monte_carlo_reference)
        references = certify.monte_carlo(comm, field, problem.domain, A, b, [X for _, X, _ in sets],
                                         epsilon, tc.paths, tc.sde_steps, tc.seed)
        result["reference"] = certify.MONTE_CARLO
    else:
        references = [(characteristics.solve(comm, field, logits, X).u0, None) for _, X, _ in sets]
        result["reference"] = certify.CHARACTERISTICS
    fe_test = None
    for (name, X, y), (reference, bound) in zip(sets, references):
        fe = evaluate_everywhere(problem.solver.V, evaluation.u0, X, f"data ({name})")
        if name == "test":
            fe_test = fe
        # every rank holds all points here: counted on each alone
        result[name] = certify.compare_logits(MPI.COMM_SELF, fe, reference, y, bound).to_dict()
        what, value = ("characteristics", "f(q(T; X))") if bound is None else ("Monte Carlo", "E f(X_T)")
        log.info(
            "%5s: PDE (%d cells, %s%d) and %s agree on %.2f%% of %d labels; "
            "max |u_h(0, X) − %s| = %.3e; accuracy PDE %.4f, %s %.4f",
            name, result["mesh_cells"], problem.resolution.space, result["degree"], what,
            100 * result[name]["label_agreement"], len(X), value,
            result[name]["max_logit_difference"], result[name]["accuracy_pde"], what,
            result[name]["accuracy_characteristics"],
        )
        if bound is not None:
            log.info("       Monte Carlo bound %.3e, beyond it %.3e; labels agree or unresolved on %.2f%%",
                     result[name]["monte_carlo_bound"], result[name]["excess"],
                     100 * result[name]["resolved_agreement"])
    return result, fe_test


def compare_run(comm: MPI.Comm, run: Path, with_problem=None) -> dict:
    """Compare the PDE and the characteristics for a trained run; writes run/compare.json.

    The PDE predicts on the mesh the run ended on (theta.npz's ``resolution``: training refines
    the mesh until the PDE is certified; the config's mesh for runs written before that), and,
    if the config's ``[compare] cells/degree`` name another one, on that too: the check
    (``train``, ``test``) is then made there and the run's own numbers are kept under
    ``training_mesh``. ``with_problem(comm, problem, p)``, if given, is called on the problem the
    check ended on before it is freed (the command line writes flow.gif with it).
    """
    config = load_config(run / store.CONFIG)
    parameters = store.read_parameters(run / store.THETA)
    p = parameters.p
    ended = (parameters.meta or {}).get("resolution") or dict(cells=config.mesh.cells, degree=config.mesh.degree)
    try:
        resolution = Resolution.from_dict(ended)
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"a damaged 'resolution' in its meta ({type(error).__name__}: {error})",
                         str(run / store.THETA)) from None
    try:
        problem = Problem.build(comm, config, resolution)
    except InputError as error:  # the marks of a local refinement come from theta.npz
        raise InputError(error.message, error.source or str(run / store.THETA)) from None
    with problem:
        if p.shape != (problem.J.n_params,):
            raise InputError(f"theta.npz has {p.size} parameters, the config needs {problem.J.n_params}", str(run))
        result, fe_test = run_agreement(comm, problem, p)
        check = config.compare
        ended = problem.resolution
        wanted = Resolution(check.cells or ended.cells, check.degree or ended.degree,
                            ended.marks if (check.cells or ended.cells) == ended.cells else ())
        if wanted == ended:
            return _finish(comm, run, problem, p, result, fe_test, with_problem)
        dataset = problem.dataset
    # The training mesh is freed before the check's is built (as ``Problem.rebuilt`` does).
    log.info("the check's PDE prediction: %s (compare.cells, compare.degree)", wanted)
    with Problem.build(comm, config, wanted, dataset) as problem:
        training_mesh = result
        result, fe_test = run_agreement(comm, problem, p)
        result["training_mesh"] = training_mesh
        return _finish(comm, run, problem, p, result, fe_test, with_problem)


def _finish(comm: MPI.Comm, run: Path, problem, p: np.ndarray, result: dict, fe_test: np.ndarray,
            with_problem) -> dict:
    """The exported ResNet's numbers added to ``result`` (the check on ``problem``, ``fe_test``
    its PDE logits at the test points, shape=(n_test, K)), written to run/compare.json, then
    ``with_problem`` called; the caller frees ``problem`` (collective)."""
    theta, A, b = problem.J.split(p)
    field = problem.model.field(theta)
    if len(problem.dataset.y_test):
        result["resnet"] = resnet_depth_tables(problem.model, theta, A, b, problem.dataset.X_test, field)
        ds = problem.dataset
        result["resnet_vs_pde"] = resnet_against_pde(problem.model, theta, A, b, ds.X_test, fe_test, ds.input_layer,
                                                     problem.J.input_parameters(p), ds.features_test)
    else:  # e.g. a FlowClassifier's run, which trains on all points
        log.info("no test points (data.test_fraction = 0): the exported ResNet is measured on test points only")
    on_rank0(comm, store.write_json, run / store.COMPARISON, result)
    if with_problem is not None:
        with_problem(comm, problem, p)
    return result
