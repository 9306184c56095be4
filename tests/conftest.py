# mpi4py before dolfinx: dolfinx needs the MPI library mpi4py loads (else libmpi.so.12 is not found).
from mpi4py import MPI

import gc
import os
import sys
from pathlib import Path

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Under mpirun, only rank 0 reports to the terminal; the others write to PYTEST_RANK_LOG."""
    comm = MPI.COMM_WORLD
    if comm.size > 1 and comm.rank > 0:
        path = os.environ.get("PYTEST_RANK_LOG", os.devnull)
        path = path if comm.rank == 1 else os.devnull
        sys.stdout = open(path, "w")


def pytest_collection_finish(session):
    """Freeze what collection imported (dolfinx, PETSc, scikit-learn, onnx: ~250k objects), so
    that the collection after each test scans only what the tests make: a full collection took
    0.5 s at load 9 (``gc.collect()`` after importing them), one after the freeze microseconds."""
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(config, items):
    if MPI.COMM_WORLD.size > 1:
        skip = pytest.mark.skip(reason="serial test (runs on one rank only)")
        for item in items:
            if "serial" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def comm():
    return MPI.COMM_WORLD


@pytest.fixture(autouse=True)
def _collect_and_synchronise():
    """After every test (as DOLFINx's conftest does): collect its garbage, then wait for all ranks.

    PETSc/dolfinx objects of a parallel mesh must be destroyed on all ranks together; collecting
    here, at the same point on every rank, keeps a later automatic collection from destroying
    them on one rank inside another test's collective. The barrier keeps a fast rank from
    starting the next test (and its files) while another still finishes this one.
    """
    yield
    gc.collect()
    MPI.COMM_WORLD.Barrier()


# --- shared fixtures (test modules do not import one another) ---------------------------------


@pytest.fixture(scope="session")
def shared_directory(tmp_path_factory):
    """``shared_directory(comm)``: a new directory, the same for all ranks of ``comm`` (pytest gives
    each process its own tmp_path). COLLECTIVE on ``comm``."""

    def make(comm: MPI.Comm) -> Path:
        path = str(tmp_path_factory.mktemp("shared")) if comm.rank == 0 else None
        return Path(comm.bcast(path, root=0))

    return make


# A small moons problem that trains in a few seconds (tests/test_train.py's SMALL, made smaller).
TINY_RUN = dict(
    mesh=dict(cells=12),
    field=dict(width=4, slabs=2),
    data=dict(kind="moons", points=80, test_fraction=0.25),
    train=dict(iterations=4, save_every=2, max_step=2.0),
    output=dict(png=False, vtx=False, animation=False),
)


@pytest.fixture(scope="module")
def trained_run(shared_directory) -> Path:
    """A run directory as ``train`` leaves it, of TINY_RUN (shared by all ranks; one per module)."""
    import solver

    comm = MPI.COMM_WORLD
    run = shared_directory(comm) / "run"
    solver.fit(TINY_RUN, run, comm=comm)
    gc.collect()
    comm.Barrier()
    return run


@pytest.fixture
def make_run():
    """``make_run(path, K=2, field=None, scaling=None) -> (model, theta, A, b)``: a run directory
    as training leaves it (config.toml and theta.npz with random parameters), made by hand on
    the calling rank; ``scaling`` defaults to scale (0.5, 0.25), shift (0.1, -0.2)."""
    import numpy as np

    from solver.config import config_from_dict
    from solver.model.from_config import velocity_model
    from solver.rundir import store

    def make(path: Path, K: int = 2, field: dict | None = None, scaling: dict | None = None) -> tuple:
        path.mkdir(exist_ok=True)
        config = config_from_dict(dict(field=field or dict(width=5, slabs=2), output=dict(png=False, vtx=False)))
        store.write_config(path / store.CONFIG, config.to_toml())
        model = velocity_model(config, config.domain_object())
        rng = np.random.default_rng(3)
        theta, A, b = 0.3 * rng.normal(size=model.n_params), rng.normal(size=(K, 2)), rng.normal(size=K)
        store.write_parameters(path / store.THETA, model, theta, A, b, domain=config.to_dict()["domain"],
                               scaling=scaling or dict(scale=[0.5, 0.25], shift=[0.1, -0.2]))
        return model, theta, A, b

    return make


@pytest.fixture
def plain_onnx():
    """``plain_onnx(net, path, use_matmul=False, extra_op=None) -> path``: a plain MLP
    (``solver.plain2resnet.plainnet.PlainNet``) written as ONNX the way other tools write one
    (Gemm, or MatMul + Add; ``extra_op``: one more node of that type at the end)."""
    import numpy as np

    from solver.resnet.onnx_builder import OnnxGraph

    def write(net, path, use_matmul: bool = False, extra_op: str | None = None):
        g = OnnxGraph("mlp", np.float32)
        y = g.input("input", net.widths[0])
        for layer in net.layers:
            if use_matmul:
                y = g.node("Add", g.node("MatMul", y, g.constant(layer.weight.T)), g.constant(layer.bias))
            else:
                y = g.node("Gemm", y, g.constant(layer.weight), g.constant(layer.bias), transB=1)
            ops = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "leaky_relu": "LeakyRelu"}
            if layer.activation in ops:
                attributes = {"alpha": layer.slope} if layer.activation == "leaky_relu" else {}
                y = g.node(ops[layer.activation], y, **attributes)
        if extra_op:
            y = g.node(extra_op, y)
        if net.output == "softmax":
            y = g.node("Softmax", y, axis=-1)
        g.output(y, "output", net.widths[-1])
        return g.save(path)

    return write


@pytest.fixture(scope="session")
def parameter_blocks():
    """``parameter_blocks(J)``: the blocks of a reduced functional's p that each get their own
    Taylor test: the velocity model's (per slab and matrix) and the output layer's A and b."""

    def blocks(J) -> dict[str, slice]:
        names = dict(J.model.block_slices())
        n = J.n_theta
        names["output.A"] = slice(n, n + J.K * J.d)
        names["output.b"] = slice(n + J.K * J.d, n + J.K * J.d + J.K)
        return names

    return blocks
