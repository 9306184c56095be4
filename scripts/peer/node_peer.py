"""The neural-ODE peer: our transport model trained as a neural ODE with torchdiffeq.

    py="$(scripts/peer/setup.sh | tail -n 1)"      # the peer venv (Python 3.11, torch CPU)
    "$py" scripts/peer/node_peer.py JOB.npz --out RESULT.json

Runs under the peer venv and imports only torch, torchdiffeq, numpy and the standard library:
torch has no CPU wheel for the project's Python 3.12 here (scripts/peer/setup.sh), so this file must not
import ``solver``.

The job
-------
JOB.npz holds ``X_train`` (n, d) float64, ``y_train`` (n,) int, ``X_test``, ``y_test``, and
``spec``, a 0-d array holding a JSON string with the keys

    dim (2 or 3), width m, slabs L, T, activation (tanh, relu, softplus, sigmoid), classes K,
    domain           {"kind": "box", "lower": [...], "upper": [...]}
                     or {"kind": "ball", "center": [...], "radius": r},
    method           "dopri5-adjoint" (odeint_adjoint; rtol, atol: default 1e-5, 1e-7),
                     "dopri5" (odeint, backpropagating through the solver's steps) or
                     "euler" / "rk4" (odeint on a fixed grid of euler_steps steps over [0, T],
                     euler_steps a multiple of L),
    optimizer        "adam" or "lbfgs" (strong Wolfe line search); iterations, lr (default 1e-2
                     for Adam, 1 for L-BFGS), weight_decay (default 0), seed (default 0),
                     threads (default 1), scale (default 1: the initial weights' scale),
    mode             "train" or "iteration_time" (then repeats, default 10),
    target_accuracy  optional: the test accuracy whose first attainment is timed,
    batch_size       optional (Adam only): minibatches of this many training points, a new
                     random order (seed) every epoch; default: the whole set each iteration,
    time_budget      optional: stop after the iteration whose training time exceeds it (s),
    stop_at_target   optional (default false): stop once the target is reached,
    evaluate_every   optional (default 1): iterations between evaluations (history entries),
    evaluate_subset  optional (default: all): those evaluations on a fixed random subset of this
                     many test (and training) points; a subset that reaches the target is
                     confirmed on the whole test set (off the clock, like every evaluation)
                     before the target counts; the final evaluation is on the whole sets,
    dropout          optional (default 0): rate p of dropout on the hidden units a(W1 x + b1)
                     of every velocity evaluation while training (inverted: the kept units
                     scaled by 1/(1 − p)); off when evaluating, as usual; needs euler or rk4,
    noise            optional (default 0): ε of Gaussian noise injection while training: each
                     Euler step adds √(2ε h)·ξ, ξ ~ N(0, I), and reflects into Ω (Euler–Maruyama
                     of dX = v dt + √(2ε) dW, the SDE whose Kolmogorov equation is the solver's
                     viscous transport); needs euler and Adam. Evaluated twice: without noise,
                     and by the mean of ``noise_samples`` (default 64) sampled logits, the
                     model's u(0, x) = E[A X_T + b].

Optional arrays ``W1`` (L, m, d), ``b1`` (L, m), ``W2`` (L, d, m), ``b2`` (L, d), ``A`` (K, d),
``b`` (K,) in the npz set the initial parameters exactly; a missing one is drawn: W1, W2 ~
N(0, scale²/fan_in), A ~ N(0, 1/d) from numpy's default_rng(seed), biases 0.

The model (float64 throughout)
------------------------------
The velocity of eq. 2, constant in t on each slab j = [jT/L, (j+1)T/L) and cut off at ∂Ω,

    v(t, x) = χ(x) · [W2_j a(W1_j x + b1_j) + b2_j],
    χ(x) = Π_i 4 (x_i − lo_i)(hi_i − x_i) / (hi_i − lo_i)²   (box),   1 − |x − c|²/R²   (ball),

carries each point from t = 0 to T; then logits = A x(T) + b, and the loss is the mean softmax
cross-entropy + weight_decay/2 · |θ|² with θ the field's parameters (A, b not penalized, as in
the project's ReducedFunctional). The flow is integrated slab by slab, each slab its own ODE
solve from the previous slab's end state: the adaptive solver never steps across a jump of v in
t, and with odeint_adjoint each slab's adjoint finds exactly that slab's parameters.

What is timed
-------------
``train``: one iteration = forward + backward + optimizer step (for L-BFGS one outer iteration,
its line search included); its seconds add up to ``train_time``. After each iteration the loss
and the train and test accuracies are evaluated off the clock; ``time_to_target`` is the
training time up to the end of the first iteration whose test accuracy reaches the target.
``iteration_time``: repeats + 1 iterations, the first a warm-up; the others' times and median.

L-BFGS runs one outer iteration per ``step`` call, with torch's line search budget (25
evaluations). torch re-evaluates the objective at the start of every call, at the point the
previous line search accepted: the objective remembers its recent points and answers that one
without a solve, so that an iteration costs what its line search costs.

The result
----------
RESULT.json: method, optimizer, mode, params {total, field, output}, n_train, n_test,
train_accuracy, test_accuracy, final_loss (at the final parameters), iterations, evaluations
(objective solves), train_time, target_accuracy, time_to_target and iteration_at_target (null if
not reached; 0 if the initial parameters reach it), in mode train initial {loss, train_acc,
test_acc} and history (per iteration: iteration, loss, train_acc, test_acc, time = training
time so far, evaluations), in mode iteration_time warmup_time, iteration_times and
median_iteration_time, nfe and
nfe_backward (velocity evaluations in the last solve's forward and backward passes), the torch
and torchdiffeq versions, threads, and the spec.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchdiffeq
from torch import nn

DTYPE = torch.float64
ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "softplus": nn.functional.softplus,
    "sigmoid": torch.sigmoid,
}
# Adaptive methods: dopri5 with the continuous adjoint, or backpropagation through its steps.
ADAPTIVE = {"dopri5-adjoint": torchdiffeq.odeint_adjoint, "dopri5": torchdiffeq.odeint}
FIXED_STEP = ("euler", "rk4")
DEFAULT_LR = {"adam": 1e-2, "lbfgs": 1.0}
INITIAL_ARRAYS = ("W1", "b1", "W2", "b2", "A", "b")
LBFGS_LINE_SEARCH = 25  # evaluations a strong Wolfe line search may take (torch's default)


class JobError(Exception):
    """A job file or spec that cannot be run."""


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class Cutoff(nn.Module):
    """χ of a box or ball domain: 1 at the centre, 0 on the boundary."""

    def __init__(self, domain: dict, dim: int):
        super().__init__()
        self.kind = domain.get("kind")
        if self.kind == "box":
            lower = torch.tensor(domain["lower"], dtype=DTYPE)
            upper = torch.tensor(domain["upper"], dtype=DTYPE)
            if lower.shape != (dim,) or upper.shape != (dim,) or not bool((upper > lower).all()):
                raise JobError(f"box needs lower < upper, each of length {dim}: {domain}")
            self.register_buffer("lower", lower)
            self.register_buffer("upper", upper)
        elif self.kind == "ball":
            center = torch.tensor(domain["center"], dtype=DTYPE)
            radius = float(domain["radius"])
            if center.shape != (dim,) or not radius > 0:
                raise JobError(f"ball needs a center of length {dim} and radius > 0: {domain}")
            self.register_buffer("center", center)
            self.radius = radius
        else:
            raise JobError(f'domain kind must be "box" or "ball", got {domain}')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """χ at the points x (shape=(n, d)); returns shape=(n,)."""
        if self.kind == "box":
            span = self.upper - self.lower
            return torch.prod(4.0 * (x - self.lower) * (self.upper - x) / span**2, dim=1)
        return 1.0 - torch.sum((x - self.center) ** 2, dim=1) / self.radius**2

    def reflect(self, x: torch.Tensor) -> torch.Tensor:
        """Points mirrored back into Ω once (a noise step is far smaller than Ω)."""
        if self.kind == "box":
            x = torch.where(x < self.lower, 2 * self.lower - x, x)
            return torch.where(x > self.upper, 2 * self.upper - x, x)
        offset = x - self.center
        r = offset.norm(dim=1, keepdim=True)
        outside = r > self.radius
        mirrored = self.center + offset * (2 * self.radius - r) / torch.where(outside, r, 1.0)
        return torch.where(outside, mirrored, x)


class SlabField(nn.Module):
    """The velocity on one slab: x ↦ χ(x) [W2 a(W1 x + b1) + b2], independent of t.

    ``nfe`` counts evaluations (the adjoint's backward solve evaluates it too).
    """

    def __init__(self, W1, b1, W2, b2, activation, cutoff: Cutoff):
        super().__init__()
        self.W1, self.b1, self.W2, self.b2 = (
            nn.Parameter(torch.as_tensor(w, dtype=DTYPE).clone()) for w in (W1, b1, W2, b2)
        )
        self.activation = activation
        self.cutoff = cutoff
        self.nfe = 0
        self.dropout = 0.0

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        hidden = self.activation(x @ self.W1.T + self.b1)
        if self.dropout:  # only while training (nn.Module.train(); evaluate() sets eval())
            hidden = nn.functional.dropout(hidden, self.dropout, training=self.training)
        return self.cutoff(x)[:, None] * (hidden @ self.W2.T + self.b2)


class FlowClassifier(nn.Module):
    """x ↦ A q(T; x) + b, with q the flow of the slab-wise velocity from t = 0 to T.

    Args:
        spec: the job spec (dim, width, slabs, T, activation, classes, domain, method, ...).
        initial: the initial parameters by name (see ``initial_parameters``).
    """

    def __init__(self, spec: dict, initial: dict[str, np.ndarray]):
        super().__init__()
        self.method = spec["method"]
        self.T = float(spec["T"])
        self.slabs_count = int(spec["slabs"])
        self.rtol = float(spec.get("rtol", 1e-5))
        self.atol = float(spec.get("atol", 1e-7))
        if self.method in FIXED_STEP:
            steps = int(spec.get("euler_steps", 0))
            if steps < 1 or steps % self.slabs_count:
                raise JobError(f"euler_steps must be a positive multiple of slabs, got {steps}")
            self.steps_per_slab = steps // self.slabs_count
        elif self.method not in ADAPTIVE:
            raise JobError(
                f'method must be one of {list(ADAPTIVE) + list(FIXED_STEP)}, got "{self.method}"'
            )
        try:
            activation = ACTIVATIONS[spec["activation"]]
        except KeyError:
            raise JobError(f"activation must be one of {list(ACTIVATIONS)}") from None
        cutoff = Cutoff(spec["domain"], int(spec["dim"]))
        self.slabs = nn.ModuleList(
            SlabField(*(initial[name][j] for name in ("W1", "b1", "W2", "b2")), activation, cutoff)
            for j in range(self.slabs_count)
        )
        self.A = nn.Parameter(torch.as_tensor(initial["A"], dtype=DTYPE).clone())
        self.b = nn.Parameter(torch.as_tensor(initial["b"], dtype=DTYPE).clone())
        self.cutoff = cutoff
        dropout, self.noise = float(spec.get("dropout", 0.0)), float(spec.get("noise", 0.0))
        if not (0.0 <= dropout < 1.0 and self.noise >= 0.0):
            raise JobError(f"dropout must be in [0, 1) and noise >= 0, got {dropout}, {self.noise}")
        if dropout and self.method not in FIXED_STEP:
            raise JobError(f"dropout needs a fixed-step method {list(FIXED_STEP)}, got {self.method!r}")
        if self.noise and self.method != "euler":
            raise JobError(f'noise needs method "euler" (Euler–Maruyama), got {self.method!r}')
        for slab in self.slabs:
            slab.dropout = dropout
        self.sampling = False  # noise also when evaluating (the mean of sampled logits)

    def field_parameters(self) -> list[nn.Parameter]:
        """θ: the velocity's parameters, slab by slab."""
        return list(self.slabs.parameters())

    @property
    def nfe(self) -> int:
        """Velocity evaluations so far, over all slabs."""
        return sum(slab.nfe for slab in self.slabs)

    def flow(self, x: torch.Tensor) -> torch.Tensor:
        """q(T; x) for the points x (shape=(n, d))."""
        for j, slab in enumerate(self.slabs):
            t0, t1 = self.T * j / self.slabs_count, self.T * (j + 1) / self.slabs_count
            if self.noise and (self.training or self.sampling):
                x = self.euler_maruyama(slab, x, t0, t1)
            elif self.method in FIXED_STEP:
                grid = torch.linspace(t0, t1, self.steps_per_slab + 1, dtype=DTYPE)
                x = torchdiffeq.odeint(slab, x, grid, method=self.method)[-1]
            else:
                x = ADAPTIVE[self.method](
                    slab, x, torch.tensor([t0, t1], dtype=DTYPE),
                    rtol=self.rtol, atol=self.atol, method="dopri5",
                )[-1]
        return x

    def euler_maruyama(self, slab: SlabField, x: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
        """One slab of x += h v + √(2ε h) ξ, reflected into Ω after each step."""
        h = (t1 - t0) / self.steps_per_slab
        for k in range(self.steps_per_slab):
            x = x + h * slab(t0 + k * h, x) + (2 * self.noise * h) ** 0.5 * torch.randn_like(x)
            x = self.cutoff.reflect(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits A q(T; x) + b, shape=(n, K)."""
        return self.flow(x) @ self.A.T + self.b


def initial_parameters(spec: dict, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The initial W1, b1, W2, b2 (stacked over slabs), A, b: from ``arrays`` where given.

    A missing array is drawn (in the order W1, W2, A from default_rng(seed), whichever are
    missing) or is zero for a bias; a given one must have its exact shape.
    """
    L, m, d, K = (int(spec[key]) for key in ("slabs", "width", "dim", "classes"))
    scale = float(spec.get("scale", 1.0))
    rng = np.random.default_rng(int(spec.get("seed", 0)))
    draws = {
        "W1": lambda: rng.normal(0.0, scale / np.sqrt(d), (L, m, d)),
        "b1": lambda: np.zeros((L, m)),
        "W2": lambda: rng.normal(0.0, scale / np.sqrt(m), (L, d, m)),
        "b2": lambda: np.zeros((L, d)),
        "A": lambda: rng.normal(0.0, 1.0 / np.sqrt(d), (K, d)),
        "b": lambda: np.zeros(K),
    }
    shapes = {"W1": (L, m, d), "b1": (L, m), "W2": (L, d, m), "b2": (L, d), "A": (K, d), "b": (K,)}
    initial = {}
    for name in INITIAL_ARRAYS:
        if name in arrays:
            value = np.asarray(arrays[name], dtype=np.float64)
            if value.shape != shapes[name]:
                raise JobError(f"initial {name} must have shape {shapes[name]}, got {value.shape}")
            initial[name] = value
        else:
            initial[name] = draws[name]()
    return initial


# --------------------------------------------------------------------------------------------
# Objective and training
# --------------------------------------------------------------------------------------------


class Objective:
    """The training loss as an optimizer closure: sets the gradients, returns the loss.

    Remembers the parameters, loss and gradients of its last ``CACHE`` evaluations and answers
    a call at bitwise the same parameters without a solve: L-BFGS re-evaluates at each step's
    start the point its line search accepted (one of the line search's points, restored exactly).
    ``nfe_forward`` / ``nfe_backward``: velocity evaluations of the last solve's two passes.
    """

    CACHE = LBFGS_LINE_SEARCH + 1

    def __init__(
        self, model: FlowClassifier, X: torch.Tensor, y: torch.Tensor, weight_decay: float
    ):
        self.model, self.X, self.y, self.weight_decay = model, X, y, weight_decay
        self.params = list(model.parameters())
        self.evaluations = 0
        self.nfe_forward = self.nfe_backward = None
        self._cache: collections.deque = collections.deque(maxlen=self.CACHE)

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the training ``logits`` + weight_decay/2 · |θ|²."""
        data = nn.functional.cross_entropy(logits, self.y)
        if not self.weight_decay:
            return data
        penalty = sum(p.pow(2).sum() for p in self.model.field_parameters())
        return data + 0.5 * self.weight_decay * penalty

    def __call__(self) -> torch.Tensor:
        key = torch.cat([p.detach().ravel() for p in self.params])
        for cached_key, value, grads in self._cache:
            if torch.equal(key, cached_key):
                for p, g in zip(self.params, grads):
                    p.grad = g.clone()
                return value
        for p in self.params:
            p.grad = None
        start = self.model.nfe
        value = self.loss(self.model(self.X))
        middle = self.model.nfe
        value.backward()
        self.nfe_forward, self.nfe_backward = middle - start, self.model.nfe - middle
        self.evaluations += 1
        value = value.detach()
        self._cache.append((key, value, [p.grad.clone() for p in self.params]))
        return value


@torch.no_grad()
def evaluate(objective: Objective, X_test: torch.Tensor, y_test: torch.Tensor,
             train: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Training loss and train / test accuracy at the current parameters (no gradients), with
    dropout and noise off (``model.eval()``); on the objective's training points, or ``train``
    (X, y) if given."""
    model = objective.model
    model.eval()
    X, y = train if train is not None else (objective.X, objective.y)
    saved = objective.X, objective.y
    objective.X, objective.y = X, y  # loss() reads the labels from the objective
    logits = model(X)
    loss = objective.loss(logits)
    objective.X, objective.y = saved
    train_acc = (logits.argmax(dim=1) == y).double().mean()
    test_acc = (model(X_test).argmax(dim=1) == y_test).double().mean()
    model.train()
    return {"loss": float(loss), "train_acc": float(train_acc), "test_acc": float(test_acc)}


@torch.no_grad()
def sample_mean_accuracy(model: FlowClassifier, X: torch.Tensor, y: torch.Tensor, samples: int) -> float:
    """The accuracy of the mean of ``samples`` noisy logits (the noise model's E[A X_T + b])."""
    model.eval()
    model.sampling = True
    mean = sum(model(X) for _ in range(samples)) / samples
    model.sampling = False
    model.train()
    return float((mean.argmax(dim=1) == y).double().mean())


class Batches:
    """Minibatches for Adam: ``size`` training points per step, a new random order every epoch
    (numpy's default_rng(seed)); ``size`` None: the whole set every step."""

    def __init__(self, n: int, size: int | None, seed: int):
        if size is not None and not 1 <= int(size) <= n:
            raise JobError(f"batch_size must be in 1..{n}, got {size}")
        self.n, self.size = n, None if size is None else int(size)
        self.rng = np.random.default_rng(seed)
        self.order, self.at = np.arange(n), n

    @contextlib.contextmanager
    def on(self, objective: "Objective", X: torch.Tensor, y: torch.Tensor):
        """The objective on the next minibatch, then on the whole set again."""
        if self.size is None:
            yield
            return
        if self.at + self.size > self.n:
            self.order, self.at = self.rng.permutation(self.n), 0
        index = torch.as_tensor(self.order[self.at:self.at + self.size])
        self.at += self.size
        objective.X, objective.y = X[index], y[index]
        objective._cache.clear()  # its answers are for another batch
        try:
            yield
        finally:
            objective.X, objective.y = X, y
            objective._cache.clear()


def make_optimizer(spec: dict, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam, or L-BFGS doing one outer iteration per ``step`` (one history entry each).

    torch's L-BFGS gives its line search max_eval − 1 evaluations, and max_eval defaults to
    5/4 max_iter = 1 here, which would leave none: set it so the line search has torch's
    default budget.
    """
    name = spec.get("optimizer", "adam")
    if name not in DEFAULT_LR:
        raise JobError(f'optimizer must be one of {list(DEFAULT_LR)}, got "{name}"')
    lr = float(spec.get("lr", DEFAULT_LR[name]))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.LBFGS(
        params, lr=lr, max_iter=1, max_eval=1 + LBFGS_LINE_SEARCH, line_search_fn="strong_wolfe"
    )


def run(spec: dict, arrays: dict[str, np.ndarray]) -> dict:
    """Run the job: train, or time iterations; returns the result dict (see module docstring)."""
    threads = int(spec.get("threads", 1))
    torch.set_num_threads(threads)
    mode = spec.get("mode", "train")
    if mode not in ("train", "iteration_time"):
        raise JobError(f'mode must be "train" or "iteration_time", got "{mode}"')

    torch.manual_seed(int(spec.get("seed", 0)))  # dropout masks and noise
    model = FlowClassifier(spec, initial_parameters(spec, arrays))
    if (model.noise or model.slabs[0].dropout) and spec.get("optimizer", "adam") != "adam":
        raise JobError("dropout and noise make the loss random: they need the Adam optimizer")
    X_train, X_test = (torch.as_tensor(arrays[k], dtype=DTYPE) for k in ("X_train", "X_test"))
    y_train, y_test = (torch.as_tensor(arrays[k], dtype=torch.long) for k in ("y_train", "y_test"))
    objective = Objective(model, X_train, y_train, float(spec.get("weight_decay", 0.0)))
    optimizer = make_optimizer(spec, list(model.parameters()))
    if mode == "iteration_time":
        iterations = int(spec.get("repeats", 10)) + 1
    else:
        iterations = int(spec.get("iterations", 100))
    target = spec.get("target_accuracy")
    batch_size = spec.get("batch_size")
    if batch_size is not None and isinstance(optimizer, torch.optim.LBFGS):
        raise JobError("batch_size is for Adam only (L-BFGS needs the same objective in its line search)")
    budget = float(spec.get("time_budget", math.inf))
    evaluate_every = int(spec.get("evaluate_every", 1))
    batches = Batches(len(y_train), batch_size, int(spec.get("seed", 0)))
    subset = spec.get("evaluate_subset")
    if subset is not None:  # fixed random subsets, the same at every evaluation
        rng = np.random.default_rng(int(spec.get("seed", 0)) + 1)
        train_rows = torch.as_tensor(rng.permutation(len(y_train))[:int(subset)])
        test_rows = torch.as_tensor(rng.permutation(len(y_test))[:int(subset)])

    def check() -> dict:
        """An in-loop evaluation: on the subsets if any, else on the whole sets."""
        if subset is None:
            return evaluate(objective, X_test, y_test)
        return evaluate(objective, X_test[test_rows], y_test[test_rows], (X_train[train_rows], y_train[train_rows]))

    def step() -> float:
        start = time.perf_counter()
        if isinstance(optimizer, torch.optim.LBFGS):
            optimizer.step(objective)
        else:
            with batches.on(objective, X_train, y_train):
                objective()
            optimizer.step()
        return time.perf_counter() - start

    n_field = sum(p.numel() for p in model.field_parameters())
    result = {
        "method": spec["method"],
        "optimizer": spec.get("optimizer", "adam"),
        "mode": mode,
        "params": {"total": n_field + model.A.numel() + model.b.numel(), "field": n_field,
                   "output": model.A.numel() + model.b.numel()},
        "n_train": len(y_train),
        "n_test": len(y_test),
    }
    train_time, history = 0.0, []
    time_to_target = iteration_at_target = None
    if mode == "iteration_time":
        times = [step() for _ in range(iterations)]
        train_time = sum(times)
        result["warmup_time"] = times[0]
        result["iteration_times"] = times[1:]
        result["median_iteration_time"] = statistics.median(times[1:])
    else:
        initial = evaluate(objective, X_test, y_test)
        result["initial"] = initial
        if target is not None and initial["test_acc"] >= target:
            time_to_target, iteration_at_target = 0.0, 0
        evaluations, k = objective.evaluations, 0
        for k in range(1, iterations + 1):
            train_time += step()
            last = k == iterations or train_time > budget
            if k % evaluate_every and not last:
                continue
            record = check()
            record.update(
                iteration=k, time=train_time, evaluations=objective.evaluations - evaluations
            )
            evaluations = objective.evaluations
            if time_to_target is None and target is not None and record["test_acc"] >= target and subset is not None:
                record["subset_test_acc"] = record["test_acc"]  # confirmed on the whole test set
                record["test_acc"] = evaluate(objective, X_test, y_test)["test_acc"]
            history.append(record)
            if time_to_target is None and target is not None and record["test_acc"] >= target:
                time_to_target, iteration_at_target = train_time, k
                last = last or bool(spec.get("stop_at_target", False))
            if last:
                break
        iterations = k

    final = history[-1] if history and subset is None else evaluate(objective, X_test, y_test)
    if model.noise:
        result["test_accuracy_sample_mean"] = sample_mean_accuracy(
            model, X_test, y_test, int(spec.get("noise_samples", 64)))
        result["train_accuracy_sample_mean"] = sample_mean_accuracy(
            model, X_train, y_train, int(spec.get("noise_samples", 64)))
    result.update(
        train_accuracy=final["train_acc"],
        test_accuracy=final["test_acc"],
        final_loss=final["loss"],
        iterations=iterations,
        evaluations=objective.evaluations,
        train_time=train_time,
        target_accuracy=target,
        time_to_target=time_to_target,
        iteration_at_target=iteration_at_target,
        history=history,
        nfe=objective.nfe_forward,
        nfe_backward=objective.nfe_backward,
        torch=torch.__version__,
        torchdiffeq=torchdiffeq.__version__,
        threads=threads,
        spec=spec,
    )
    return result


def load_job(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The spec (parsed) and the arrays of a job file."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    missing = [k for k in ("X_train", "y_train", "X_test", "y_test", "spec") if k not in arrays]
    if missing:
        raise JobError(f"{path} lacks {missing}")
    spec = json.loads(str(arrays.pop("spec")[()]))
    for key in ("dim", "width", "slabs", "T", "activation", "classes", "domain", "method"):
        if key not in spec:
            raise JobError(f'spec lacks "{key}"')
    d = int(spec["dim"])
    if d not in (2, 3):
        raise JobError(f"dim must be 2 or 3, got {d}")
    for name in ("X_train", "X_test"):
        if arrays[name].ndim != 2 or arrays[name].shape[1] != d:
            raise JobError(f"{name} must have shape (n, {d}), got {arrays[name].shape}")
    return spec, arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job", type=Path, help="the job file (.npz)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the result JSON")
    args = parser.parse_args(argv)
    try:
        spec, arrays = load_job(args.job)
        result = run(spec, arrays)
    except JobError as error:
        print(f"node_peer: {error}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
