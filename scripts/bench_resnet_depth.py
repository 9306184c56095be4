"""Depth table of the exported ResNet: error against the characteristics, observed order, label
agreement and the time of a forward pass, for each block scheme (euler, midpoint, rk4).

    .venv/bin/python scripts/bench_resnet_depth.py                  # 2D, θ constant on 4 slabs
    .venv/bin/python scripts/bench_resnet_depth.py --dim 3 --slabs 3
    .venv/bin/python scripts/bench_resnet_depth.py --no-timing      # errors only
    .venv/bin/python scripts/bench_resnet_depth.py --quick          # depths <= 16, no timing

The field is a random tanh MLP velocity (width 8, scale 2) on [-1, 1]^d, T = 1; the reference
is ``characteristics.flow`` (DOP853, rtol 1e-12) from points inside Ω; the output layer is a
random 3-class softmax. "numpy" and "ort f32/f64" are the median wall times of one forward on
10^5 points (numpy reference, onnxruntime CPU float32/float64).
"""

from mpi4py import MPI  # noqa: F401  # first: mpi4py before anything that may load dolfinx

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from solver.model.characteristics import flow
from solver.model.domain import Box
from solver.resnet.net import SCHEMES, depth_table, forward, output_layer, resnet_from_velocity
from solver.resnet.onnx_net import load_onnx_session, save_onnx
from solver.model.velocity import VelocityModel

MAX_DEPTH = {"euler": 256, "midpoint": 256, "rk4": 64}


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=2, choices=(2, 3))
    parser.add_argument("--slabs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--points", type=int, default=2000, help="points for the error")
    parser.add_argument("--timing-points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="depths up to 16, no timing")
    parser.add_argument("--no-timing", action="store_true", help="errors only")
    args = parser.parse_args()
    # The table starts below the slab count on purpose; the exporter's warning about blocks
    # straddling slab times would repeat on every such row.
    logging.getLogger("solver").setLevel(logging.ERROR)
    timing = not (args.quick or args.no_timing)

    d = args.dim
    domain = Box((-1.0,) * d, (1.0,) * d)
    model = VelocityModel(d, 8, args.slabs, 1.0, "tanh", domain)
    theta = model.init(args.seed, scale=2.0)
    out = output_layer("softmax", d, num_components=3, seed=2)
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-0.95, 0.95, (args.points, d))
    start = time.perf_counter()
    q_T = flow(model.field(theta), x0, 0.0, model.T, rtol=1e-12, atol=1e-13)
    print(f"field: {d}D tanh MLP, width 8, {args.slabs} slabs, T=1, "
          f"seed {args.seed}; reference ({args.points} points, DOP853 rtol 1e-12): "
          f"{time.perf_counter() - start:.1f} s")
    x_time = rng.uniform(-0.95, 0.95, (args.timing_points, d))

    with tempfile.TemporaryDirectory() as tmp:
        for scheme in SCHEMES:
            top = 16 if args.quick else MAX_DEPTH[scheme]
            depths = [2**i for i in range(int(np.log2(top)) + 1)]
            rows = depth_table(model, theta, x0, q_T, depths, scheme, out)
            print(f"\n{scheme}")
            header = f"{'N':>5} {'max error':>10} {'order':>6} {'labels':>7}"
            if timing:
                header += f" {'numpy':>8} {'ort f32':>8} {'ort f64':>8}"
            print(header)
            for row in rows:
                line = (f"{row.depth:5d} {row.max_error:10.3e} {row.order:6.2f} "
                        f"{100 * row.label_agreement:6.2f}%")
                if timing:
                    net = resnet_from_velocity(model, theta, row.depth, scheme, output=out)
                    t_np = median_time(lambda: forward(net, x_time), args.repeats)
                    line += f" {t_np:7.3f}s"
                    for dtype in ("float32", "float64"):
                        path = save_onnx(net, Path(tmp) / f"{scheme}{row.depth}.onnx", dtype)
                        session = load_onnx_session(path, dim=d)
                        session(x_time)  # warm-up
                        line += f" {median_time(lambda: session(x_time), args.repeats):7.3f}s"
                print(line)


if __name__ == "__main__":
    main()
