"""A viscous run (ε > 0) predicts the expectation over the stochastic flow, never the inviscid
flow silently: ``FlowClassifier.load(run)`` takes the Monte Carlo mean, ``predict --method
characteristics|resnet`` refuses (tests/test_nothing_lost.py). Rank-local run, collective
predictions (1 or 2 ranks)."""

from mpi4py import MPI

import numpy as np

from solver.config import load_config
from solver.estimator import FlowClassifier
from solver.model.from_config import velocity_model
from solver.model import characteristics, stochastic
from solver.rundir import store
from cli_harness import make_run


def test_a_loaded_viscous_run_predicts_the_stochastic_expectation(comm, shared_directory):
    work = shared_directory(comm)
    run = work / "run"
    if comm.rank == 0:
        make_run(run)
        text = (run / store.CONFIG).read_text()
        text = text.replace("\nviscosity = 0.0\n", "\nviscosity = 0.05\n")
        (run / store.CONFIG).write_text(text.replace('\nscheme = "sl"\n', '\nscheme = "rk3"\n'))  # viscous
        config = load_config(run / store.CONFIG)
        p = store.read_parameters(run / store.THETA)  # again, with the classes load needs
        store.write_parameters(run / store.THETA, velocity_model(config, config.domain_object()), p.theta, p.A, p.b,
                               domain=p.meta["domain"], scaling=p.meta["scaling"], classes=["0", "1"])
    comm.Barrier()
    estimator = FlowClassifier.load(run, comm=comm)
    X = np.random.default_rng(1).uniform(-0.3, 0.3, (12, 2))
    got = estimator.decision_function(X)
    config, domain, model, (theta, A, b) = estimator._model()
    x = estimator._to_omega(X, domain.dim)
    field, terminal = model.field(theta), (lambda q: q @ A.T + b)
    tc = config.train
    expected = stochastic.solve(comm, field, domain, terminal, x, 0.05, paths=tc.paths, steps=tc.sde_steps,
                                seed=tc.seed, antithetic=True, heun=True)
    np.testing.assert_allclose(got, expected.u0[:, 1] - expected.u0[:, 0], rtol=1e-12, atol=1e-12)
    inviscid = characteristics.solve(comm, field, terminal, x).u0
    # ε = 0.05 moves the expectation by more than the Monte Carlo's own error: ε is not dropped.
    assert np.max(np.abs(expected.u0 - inviscid) - expected.bound) > 0
    comm.Barrier()
