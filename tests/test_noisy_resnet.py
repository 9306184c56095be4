"""`export --noise`: the stochastic ResNet (each block adds √(2ε s)·ξ and reflects into Ω), numpy
and ONNX; its mean is the viscous PDE's u(0, x) (checked against the Monte Carlo of the SDE)."""

import numpy as np
import pytest

from solver.errors import InputError
from solver.model.domain import Ball, Box
from solver.model.velocity import VelocityModel
from solver.resnet.export import export
from solver.resnet.net import (OutputLayer, flow_map, forward, load_npz, resnet_from_velocity,
                               sample_mean)
from solver.resnet.onnx_net import load_onnx_session, to_onnx



def noisy_net(domain, noise=0.05, depth=8, scheme="euler"):
    model = VelocityModel(dim=domain.dim, width=5, slabs=2, T=1.0, activation="tanh", domain=domain)
    theta = model.init(2, 1.0)
    rng = np.random.default_rng(1)
    out = OutputLayer("linear", rng.normal(size=(2, domain.dim)), rng.normal(size=2))
    return resnet_from_velocity(model, theta, depth, scheme, output=out, noise=noise)


@pytest.mark.parametrize("domain", [Box((-1.0, -1.0), (1.0, 1.0)), Ball((0.0, 0.0), 1.0)], ids=["box", "disk"])
@pytest.mark.parametrize("scheme", ["euler", "midpoint"])
def test_onnx_equals_numpy_on_the_same_noise(domain, scheme):
    """The ONNX graph with ξ as an input equals the numpy reference on that ξ (float64); a large
    ε sends points out of Ω, so the reflection is exercised."""
    import onnxruntime as ort

    net = noisy_net(domain, noise=0.3, scheme=scheme)
    rng = np.random.default_rng(0)
    x = domain.reflect(rng.uniform(-0.9, 0.9, (50, 2)))
    xi = rng.standard_normal((net.depth, 50, 2))
    session = ort.InferenceSession(to_onnx(net, "float64", noise_input=True).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    output, flow = session.run(["output", "flow"], {"x": x, "xi": xi})
    np.testing.assert_allclose(flow, flow_map(net, x, xi=xi), rtol=0, atol=1e-12)
    np.testing.assert_allclose(output, forward(net, x, xi=xi), rtol=0, atol=1e-12)
    assert domain.contains(flow).all()
    # Without the noise the points would have stayed put far less: the noise did move them.
    assert np.abs(flow - flow_map(noisy_net(domain, noise=0.0, scheme=scheme), x)).max() > 0.3


def test_export_noise_writes_a_sampling_onnx_whose_mean_is_numpys(tmp_path, make_run):
    """`export --noise 0.05`: npz and ONNX (RandomNormalLike: a new sample per run); the mean of M
    ONNX runs and of M numpy samples agree within 4 standard errors."""
    make_run(tmp_path)
    written = export(tmp_path, 8, "euler", ["onnx", "npz"], noise=0.05)
    assert tmp_path / "resnet-euler-8-noise.npz" in written
    net = load_npz(tmp_path / "resnet-euler-8-noise.npz")
    assert net.noise == 0.05
    session = load_onnx_session(tmp_path / "resnet-euler-8-noise-float64.onnx")
    assert session.metadata["noise"]["viscosity"] == 0.05
    x = np.random.default_rng(2).uniform(-1, 1, (6, 2))
    M = 400
    runs = np.stack([session(x) for _ in range(M)])
    assert np.abs(runs[0] - runs[1]).max() > 0  # a sample per run
    onnx_mean, onnx_se = runs.mean(0), runs.std(0, ddof=1) / np.sqrt(M)
    np_mean, np_se = sample_mean(net, x, M, np.random.default_rng(5))
    assert np.all(np.abs(onnx_mean - np_mean) <= 4 * np.hypot(onnx_se, np_se) + 1e-12)


def test_noise_options(tmp_path, make_run):
    make_run(tmp_path)
    with pytest.raises(InputError, match="field.viscosity, which is 0"):
        export(tmp_path, 4, "euler", ["npz"], noise="run")
    for bad in ("-0.1", "nan", "abc"):
        with pytest.raises(InputError, match="--noise must be a number > 0"):
            export(tmp_path, 4, "euler", ["npz"], noise=bad)
    # No noise: the deterministic net, as before (no noise in its metadata).
    net = load_npz(export(tmp_path, 4, "euler", ["npz"])[0])
    assert net.noise == 0.0 and "noise" not in net.metadata()
