"""Export of a run directory as an explicit ResNet: the right net, numpy and ONNX only (no dolfinx),
and a broken run an InputError. The run is made by hand (config.toml, theta.npz): no training."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from solver.config import config_from_dict
from solver.errors import InputError
from solver.resnet.export import export
from solver.resnet.net import OutputLayer, forward, load_npz, resnet_from_velocity
from solver.rundir import store

ROOT = Path(__file__).resolve().parent.parent
SCALING = dict(scale=[0.5, 0.25], shift=[0.1, -0.2])


@pytest.mark.serial  # a subprocess of an MPI rank cannot start MPI
def test_importing_export_loads_no_dolfinx():
    code = "import solver.resnet.export, sys; assert 'dolfinx' not in sys.modules, 'dolfinx loaded'"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("field", [None, dict(kind="mlp1", slabs=2, activation="relu")])
def test_export_writes_the_learned_net(tmp_path, field, make_run):
    model, theta, A, b = make_run(tmp_path, field=field, scaling=SCALING)
    written = export(tmp_path, 4, "midpoint", ["npz"])
    assert written == [tmp_path / "resnet-midpoint-4.npz"]
    expected = resnet_from_velocity(model, theta, 4, "midpoint", output=OutputLayer("linear", A, b),
                                    input_scale=np.array(SCALING["scale"]), input_shift=np.array(SCALING["shift"]))
    x = np.random.default_rng(0).uniform(-1, 1, (20, 2))
    np.testing.assert_allclose(forward(load_npz(written[0]), x), forward(expected, x), rtol=0, atol=1e-14)
    if field is not None:  # one layer: the blocks are x + s χ a(W x + b), W2 = s I
        net = load_npz(written[0])
        assert np.allclose(net.W2, net.W2[0, 0, 0, 0] * np.eye(2)) and not net.b2.any()


@pytest.mark.serial
def test_export_of_a_run_needs_no_dolfinx(tmp_path, make_run):
    """The whole export, ONNX included, in a process that never loads dolfinx."""
    make_run(tmp_path)
    code = (
        "import sys; from pathlib import Path; from solver.resnet.export import export; "
        f"written = export(Path({str(tmp_path)!r}), 3, 'euler', ['onnx', 'npz']); "
        "assert 'dolfinx' not in sys.modules, 'dolfinx loaded'; print(len(written))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3"]
    for name in ("resnet-euler-3.npz", "resnet-euler-3-float32.onnx", "resnet-euler-3-float64.onnx"):
        assert (tmp_path / name).exists(), name


def test_broken_runs_are_input_errors(tmp_path, make_run):
    make_run(tmp_path)
    with pytest.raises(InputError, match="--depth must be >= 1, got 0"):
        export(tmp_path, 0, "euler", ["npz"])
    with pytest.raises(InputError, match="--format takes a comma-separated list of .*, got .pt."):
        export(tmp_path, 2, "euler", ["pt"])
    p = store.read_parameters(tmp_path / store.THETA).p
    np.savez(tmp_path / store.THETA, p=p)  # a p-only theta.npz (a warm start reads it; export cannot)
    with pytest.raises(InputError, match="theta.npz: holds p only"):
        export(tmp_path, 2, "euler", ["npz"])
    (tmp_path / store.THETA).write_bytes(b"")
    with pytest.raises(InputError, match="theta.npz: cannot read learned parameters: the file is empty"):
        export(tmp_path, 2, "euler", ["npz"])
    (tmp_path / store.THETA).unlink()
    with pytest.raises(InputError, match="theta.npz: file not found"):
        export(tmp_path, 2, "euler", ["npz"])


def test_export_out_and_the_onnx_metadata(tmp_path, make_run):
    """``out``: the files go there (made if missing), not into the run; the ONNX metadata carry
    the class names, the input scaling and the run's certification."""
    import json

    import onnx

    run = tmp_path / "run"
    model, theta, A, b = make_run(run)
    config = config_from_dict(dict(field=dict(width=5, slabs=2)))
    store.write_parameters(run / store.THETA, model, theta, A, b, domain=config.to_dict()["domain"],
                           scaling=SCALING, classes=["benign", "malignant"])
    check = dict(train=dict(points=80, label_agreement=1.0, max_logit_difference=0.12),
                 test=dict(points=20, label_agreement=0.95, max_logit_difference=0.31), reference="characteristics")
    store.write_json(run / store.METRICS, dict(certified=False, check=check, tolerance=0.5, agreement=0.995))
    before = sorted(p.name for p in run.iterdir())
    written = export(run, 3, "euler", ["onnx", "npz"], out=tmp_path / "exported" / "nets")
    assert {p.parent for p in written} == {tmp_path / "exported" / "nets"} and len(written) == 3
    assert sorted(p.name for p in run.iterdir()) == before
    props = {p.key: p.value for p in onnx.load(str(written[1])).metadata_props}
    meta = json.loads(next(v for v in props.values() if v.startswith("{")))
    assert meta["classes"] == ["benign", "malignant"]
    assert meta["input_scaling"]["scale"] == SCALING["scale"] and meta["input_scaling"]["shift"] == SCALING["shift"]
    assert meta["certification"] == dict(certified=False, reference="characteristics", max_logit_difference=0.31,
                                         label_agreement=0.95, tolerance=0.5, agreement=0.995)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="--out must be a directory"):
        export(run, 3, "euler", ["npz"], out=tmp_path / "file")


@pytest.mark.serial  # a subprocess of an MPI rank cannot start MPI
def test_export_command_takes_out(tmp_path, make_run):
    run = tmp_path / "run"
    make_run(run)
    done = subprocess.run([sys.executable, "-m", "solver", "export", str(run), "--depth", "2", "--format", "npz",
                           "--out", str(tmp_path / "nets")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "nets" / "resnet-euler-2.npz").exists() and not (run / "resnet-euler-2.npz").exists()
