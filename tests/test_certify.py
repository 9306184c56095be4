"""Certified training: the PDE checked against the characteristics during `train`, the resolution
raised where they disagree, and the same run resumed on 2 ranks; bad certification keys."""

from mpi4py import MPI

import gc

import numpy as np
import pytest

from solver.config import config_from_dict
from solver.errors import InputError
from solver.learn import certify
from solver.learn.train import Problem, train

# Circles in 3D on a 5³ DG1 mesh: without resolution control the optimizer drifts into the
# discretization error (measured: 100% train accuracy reported after 20 iterations while the
# flow disagrees on 3.3% of the test labels, max logit difference 3.1).
DRIFTS = dict(
    domain=dict(kind="box", lower=[-1, -1, -1], upper=[1, 1, 1]),
    mesh=dict(cells=5),
    field=dict(width=6, slabs=3, activation="tanh"),
    data=dict(kind="circles", points=120, noise=0.05, factor=0.5, augment_dim=3, test_fraction=0.25,
              margin=0.15),  # the extreme points (at ±(1 − margin)) stay off facets on 5³…23³
    train=dict(iterations=20, max_step=2.0, check_every=5, tolerance=1.0, save_every=100),
    output=dict(png=False, vtx=False, animation=False),
)


def run(comm, shared_directory, resume_from=None, **train_keys):
    config = config_from_dict({**DRIFTS, "train": {**DRIFTS["train"], **train_keys}})
    out = resume_from or shared_directory(comm)
    outcome = train(comm, Problem.build(comm, config), out, resume=resume_from is not None)
    return outcome, out


@pytest.mark.slow
def test_a_drifting_3d_problem_ends_within_tolerance(comm, shared_directory):
    fixed, _ = run(comm, shared_directory, adapt=False)
    adapted, _ = run(comm, shared_directory)
    print(f"\nfixed 5³: max Δ {fixed.check.max_logit_difference:.2f}, agreement "
          f"{fixed.check.label_agreement:.3f}; adapted to {adapted.problem.resolution}: "
          f"max Δ {adapted.check.max_logit_difference:.2f}, agreement {adapted.check.label_agreement:.3f}")
    assert not fixed.check.close and fixed.check.max_logit_difference > 2.0
    assert adapted.check.passed and adapted.check.max_logit_difference <= 1.0
    resolutions = [(row["cells"], row["degree"]) for row in adapted.history]
    assert resolutions[0] == (5, 1) and resolutions[-1] != (5, 1) and resolutions == sorted(resolutions)
    # every number reported is checked: the final accuracies are those of the final mesh
    assert adapted.check.test.accuracy_pde == adapted.check.test.accuracy_characteristics
    for outcome in (fixed, adapted):
        outcome.problem.destroy()


@pytest.mark.slow
def test_the_final_check_raises_the_degree_then_refines_locally(comm, shared_directory):
    """Trained on the coarse mesh throughout (refine_above large), certified at the end on DG2
    with local refinements; compare RUN rebuilds that mesh from the run directory."""
    from solver.check.compare_run import compare_run
    from solver.parallel import on_rank0
    from solver.rundir import store
    from solver.rundir.outputs import write_training_outputs

    outcome, out = run(comm, shared_directory, refine_above=100.0)
    ended = outcome.problem.resolution
    print(f"\nended on {ended}: max Δ {outcome.check.max_logit_difference:.2f}")
    assert [row["cells"] for row in outcome.history] == [5] * len(outcome.history)
    assert ended.degree == 2 and ended.marks and outcome.check.close
    on_rank0(comm, store.write_config, out / store.CONFIG, outcome.problem.config.to_toml())
    write_training_outputs(comm, outcome, out)
    compared = compare_run(comm, out)
    assert compared["refinements"] == len(ended.marks)
    assert compared["dofs"] == outcome.problem.solver.num_dofs_global
    assert compared["test"]["max_logit_difference"] == pytest.approx(outcome.check.test.max_logit_difference, abs=1e-8)
    outcome.problem.destroy()


@pytest.mark.slow
def test_refine_and_resume_end_at_the_same_theta(comm, shared_directory):
    """20 iterations in one go, or 14 (past the raise at 10) then resumed to 20: the same θ."""
    whole, _ = run(comm, shared_directory)
    part, out = run(comm, shared_directory, iterations=14)
    assert (part.history[-1]["cells"], part.history[-1]["degree"]) != (5, 1)  # raised before the checkpoint
    resumed, _ = run(comm, shared_directory, resume_from=out)
    difference = np.max(np.abs(resumed.state.p - whole.state.p)) / np.max(np.abs(whole.state.p))
    print(f"\nresumed on {resumed.problem.resolution}: relative θ difference {difference:.1e}")
    assert difference < 1e-8
    assert resumed.problem.resolution == whole.problem.resolution
    for outcome in (whole, part, resumed):
        outcome.problem.destroy()


@pytest.mark.slow
def test_one_and_two_ranks_take_the_same_path(comm, shared_directory, tmp_path_factory):
    """The same refinements at the same iterations and the same θ on 1 rank as on all of them."""
    if comm.size == 1:
        pytest.skip("needs mpirun -n 2")
    config = config_from_dict(DRIFTS)
    alone = train(MPI.COMM_SELF, Problem.build(MPI.COMM_SELF, config), tmp_path_factory.mktemp("self"))
    together, _ = run(comm, shared_directory)
    cells = lambda outcome: [(row["cells"], row["degree"]) for row in outcome.history]  # noqa: E731
    difference = np.max(np.abs(alone.state.p - together.state.p)) / np.max(np.abs(alone.state.p))
    print(f"\n1 vs {comm.size} ranks: relative θ difference {difference:.1e}, ended on {cells(together)[-1]}")
    assert cells(alone) == cells(together)
    assert difference < 1e-8
    for outcome in (alone, together):
        outcome.problem.destroy()


def test_agreement_counts_and_maxima_are_global(comm):
    """Each rank checks its own points; the result is the one of all points on one rank."""
    from solver.model.domain import Box
    from solver.model.velocity import VelocityModel

    box = Box((-1.0, -1.0), (1.0, 1.0))
    model = VelocityModel(dim=2, width=4, slabs=2, T=1.0, activation="tanh", domain=box)
    field = model.field(model.init(3, 1.0))
    rng = np.random.default_rng(0)
    X = rng.uniform(-0.9, 0.9, (40, 2))
    A, b = np.array([[1.0, 0.0], [0.0, 1.0]]), np.zeros(2)
    from solver.model import characteristics

    exact = characteristics.flow(field, X, 0.0, 1.0) @ A.T + b
    fe = exact.copy()
    fe[7] += [0.3, -0.3]  # one point off by 0.3
    y = exact.argmax(axis=1)
    mine = slice(comm.rank, None, comm.size)
    result = certify.agreement(comm, field, A, b, X[mine], y[mine], fe[mine])
    flipped = int(np.sign(exact[7, 0] - exact[7, 1]) != np.sign(fe[7, 0] - fe[7, 1]))
    assert result.points == 40
    assert result.max_logit_difference == pytest.approx(0.3, abs=1e-8)
    assert result.label_agreement == pytest.approx(1 - flipped / 40)
    assert result.accuracy_characteristics == 1.0


def test_resolution_raises_the_degree_then_refines_to_odd_cell_counts():
    r = certify.Resolution(13, 1)
    assert r.raised() == certify.Resolution(13, 2)
    assert r.raised().raised() == certify.Resolution(21, 2)
    assert certify.Resolution(5, 2).raised() == certify.Resolution(9, 2)
    assert r.raised(max_degree=1) == certify.Resolution(21, 1)
    assert r.dofs_ratio(certify.Resolution(21, 1), 3) == pytest.approx((21 / 13) ** 3)
    assert r.dofs_ratio(r.raised(), 3) == pytest.approx(10 / 4)


@pytest.mark.parametrize("key, value, fragment", [
    ("tolerance", 0.0, "train.tolerance"),
    ("refine_above", -1.0, "train.refine_above"),
    ("agreement", 1.5, "train.agreement"),
    ("check_every", 0, "train.check_every"),
    ("check_points", 0, "train.check_points"),
    ("adapt", "yes", "train.adapt"),
    ("paths", 3, "train.paths"),  # antithetic pairs: even
    ("paths", 2, "train.paths"),  # at least two pairs
    ("sde_steps", 1, "train.sde_steps"),
])
def test_bad_certification_keys(key, value, fragment):
    with pytest.raises(InputError, match=fragment.replace(".", r"\.")):
        config_from_dict({"train": {key: value}}, source="p.toml")


def test_max_dofs_below_the_starting_mesh(comm):
    config = config_from_dict({**DRIFTS, "train": dict(max_dofs=100)}, source="p.toml")
    with pytest.raises(InputError, match=r"p\.toml: train\.max_dofs = 100 is below"):
        Problem.build(comm, config)


# --- viscous runs (ε > 0): certified against the Monte Carlo of the SDE -------------------------

# Moons on 12² DG1 with ε = 0.01: the characteristics are the wrong reference for it (measured:
# 97.5% label agreement, max logit difference 0.58 after 10 iterations), the Monte Carlo of
# dX = v dt + √(2ε) dW the right one.
VISCOUS = dict(
    mesh=dict(cells=12, degree=1),
    field=dict(width=8, slabs=4, activation="tanh", viscosity=0.01),
    data=dict(kind="moons", points=200, noise=0.1),
    train=dict(iterations=10, kinetic=0.05, max_step=2.0, check_every=10, adapt=False, save_every=100,
               paths=128),
    output=dict(png=False, vtx=False, animation=False),
)


@pytest.fixture(scope="module")
def viscous_run(shared_directory):
    """A viscous run trained and written to a run directory (shared by the tests below)."""
    comm = MPI.COMM_WORLD
    from solver.parallel import on_rank0
    from solver.rundir import store
    from solver.rundir.outputs import write_training_outputs

    config = config_from_dict(VISCOUS)
    out = shared_directory(comm)
    outcome = train(comm, Problem.build(comm, config), out)
    with outcome.problem:
        on_rank0(comm, store.write_config, out / store.CONFIG, config.to_toml())
        write_training_outputs(comm, outcome, out)
        yield outcome, out
    gc.collect()
    comm.Barrier()


def test_a_viscous_run_is_certified_against_the_monte_carlo(comm, viscous_run):
    from solver.learn.train import check
    from solver.rundir import store

    outcome, out = viscous_run
    mc = outcome.check
    old = check(comm, outcome.problem, outcome.state.p, certify.CHARACTERISTICS)
    print(f"\nMonte Carlo: agree {mc.label_agreement:.3f}, max Δ {mc.max_logit_difference:.3f}, bound "
          f"{mc.monte_carlo_bound:.3f}, beyond it {mc.certified_difference:.3f}, {mc.seconds:.2f} s; "
          f"characteristics: agree {old.label_agreement:.3f}, max Δ {old.max_logit_difference:.3f}")
    assert mc.reference == certify.MONTE_CARLO and old.reference == certify.CHARACTERISTICS
    assert mc.passed and not old.passed
    assert 0 < mc.monte_carlo_bound < 0.5 * VISCOUS["train"].get("tolerance", 0.5)
    # the rule: what lies beyond the bound, no more than the raw difference
    assert mc.certified_difference <= mc.max_logit_difference
    assert mc.max_logit_difference - mc.monte_carlo_bound <= mc.certified_difference + 1e-12
    metrics = store.read_json(out / store.METRICS)
    assert metrics["certified"] and metrics["check"]["reference"] == "Monte Carlo"
    assert metrics["check"]["test"]["excess"] == pytest.approx(mc.test.excess, abs=1e-12)
    history = store.read_history(out / store.HISTORY)
    assert history[-1]["monte_carlo_bound"] == pytest.approx(mc.monte_carlo_bound, rel=1e-9)


def test_compare_run_of_a_viscous_run_is_the_final_check(comm, viscous_run):
    from solver.check.compare_run import compare_run

    outcome, out = viscous_run
    compared = compare_run(comm, out)
    assert compared["reference"] == "Monte Carlo"
    for name, mine in (("train", outcome.check.train), ("test", outcome.check.test)):
        for key in ("max_logit_difference", "monte_carlo_bound", "excess", "label_agreement", "resolved_agreement"):
            assert compared[name][key] == pytest.approx(getattr(mine, key), abs=1e-10), (name, key)


def test_a_too_coarse_mesh_fails_the_monte_carlo_check_and_is_refined(comm, viscous_run):
    """The trained field on 3² DG2: the check fails beyond the Monte Carlo's bound (measured: max
    Δ 1.25, bound 0.12), and the resolution control marks cells for refinement, the same on
    every rank."""
    from solver.learn.train import check, next_resolution

    outcome, _ = viscous_run
    with Problem.build(comm, outcome.problem.config, certify.Resolution(3, 2)) as coarse:
        coarse.J.evaluate(outcome.state.p)
        result = check(comm, coarse, outcome.state.p)
        print(f"\n3² DG2: max Δ {result.max_logit_difference:.3f}, bound {result.monte_carlo_bound:.3f}, "
              f"beyond it {result.certified_difference:.3f}")
        assert not result.close and not result.passed
        assert result.certified_difference > 0.5 > 2 * result.monte_carlo_bound
        finer = next_resolution(comm, coarse, outcome.state.p, 0.5)
        assert (finer.cells, finer.degree) == (3, 2) and len(finer.marks) == 1 and len(finer.marks[0]) > 0
        assert all(other == finer for other in comm.allgather(finer))


def test_the_monte_carlo_check_is_the_same_on_one_rank_and_all(comm, viscous_run):
    from solver.learn.train import check

    outcome, _ = viscous_run
    with Problem.build(MPI.COMM_SELF, outcome.problem.config) as alone:
        alone.J.evaluate(outcome.state.p)
        one = check(MPI.COMM_SELF, alone, outcome.state.p).to_dict()
        together = outcome.check.to_dict()
        for name in ("train", "test"):
            for key, value in together[name].items():
                assert one[name][key] == pytest.approx(value, abs=1e-10), (name, key)


def test_inviscid_checks_keep_their_fields(comm):
    """ε = 0: the characteristics, and none of the Monte Carlo's fields in the files."""
    from solver.model.domain import Box
    from solver.model.velocity import VelocityModel

    box = Box((-1.0, -1.0), (1.0, 1.0))
    model = VelocityModel(dim=2, width=4, slabs=2, T=1.0, activation="tanh", domain=box)
    field = model.field(model.init(3, 1.0))
    X = np.random.default_rng(0).uniform(-0.9, 0.9, (20, 2))
    A, b = np.eye(2), np.zeros(2)
    fe = X @ A.T + b
    result = certify.agreement(comm, field, A, b, X, np.zeros(20, dtype=int), fe)
    assert set(result.to_dict()) == {"points", "label_agreement", "max_logit_difference", "accuracy_pde",
                                     "accuracy_characteristics"}
    assert result.certified_difference == result.max_logit_difference
    assert result.certified_agreement == result.label_agreement


def test_unresolved_labels_do_not_count_against_the_pde(comm):
    """A label flip within the Monte Carlo's bounds is not held against the PDE; one beyond is."""
    reference = np.array([[1.0, 0.9], [1.0, 0.0], [0.0, 1.0]])
    bound = np.full((3, 2), 0.1)
    fe = np.array([[0.9, 1.0], [0.0, 1.0], [0.0, 1.0]])  # point 0: unresolved flip, point 1: a real one
    mine = slice(comm.rank, None, comm.size)
    result = certify.compare_logits(comm, fe[mine], reference[mine], np.zeros(3, dtype=int)[mine], bound[mine])
    assert result.label_agreement == pytest.approx(1 / 3)
    assert result.resolved_agreement == pytest.approx(2 / 3)
    assert result.excess == pytest.approx(0.9) and result.monte_carlo_bound == pytest.approx(0.1)


def test_advice_is_the_one_action_that_applies():
    """An uncertified run's advice: near-tied labels are not a mesh's to settle; with adapt off,
    turn it on (not "raise max_dofs"); with adapt on, max_dofs stopped it."""
    ok = certify.Agreement(points=100, label_agreement=1.0, max_logit_difference=0.1, accuracy_pde=1.0,
                           accuracy_characteristics=1.0)
    tied = certify.Agreement(points=400, label_agreement=0.99, max_logit_difference=0.29, accuracy_pde=0.9,
                             accuracy_characteristics=0.9)
    far = certify.Agreement(points=400, label_agreement=0.9, max_logit_difference=1.7, accuracy_pde=0.9,
                            accuracy_characteristics=0.9)
    near = certify.Check(tied, ok, passed=False, close=True, seconds=0.0)
    text = certify.advice(near, adapt=True, tolerance=0.5, dofs=1000)
    assert "the 4 of 500 checked points whose labels differ" in text and "within 0.58 of each other" in text
    assert "decision boundary" in text and "max_dofs" not in text
    failed = certify.Check(far, ok, passed=False, close=False, seconds=0.0)
    off = certify.advice(failed, adapt=False, tolerance=0.5, dofs=1000)
    assert off.startswith("turn on train.adapt") and "max_dofs" not in off
    on = certify.advice(failed, adapt=True, tolerance=0.5, dofs=1000)
    assert on.startswith("raise train.max_dofs") and "1000 dofs" in on


@pytest.mark.serial
def test_a_local_refinement_over_max_dofs_keeps_the_mesh():
    """The final check's local refinement beyond train.max_dofs stays on the current mesh (it
    raised build's starting-mesh error instead)."""
    from sklearn.datasets import make_moons

    from solver import FlowClassifier

    X, y = make_moons(60, noise=0.1, random_state=0)
    clf = FlowClassifier(cells=4, iterations=2, check_every=1, tolerance=1e-6, max_dofs=3000).fit(X, y)
    assert clf.resolution_["dofs"] <= 3000
