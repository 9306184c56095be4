"""The learned input layer: data of any number of features mapped into Ω (the paper's "dimension
matching", section 6: "otherwise, extra projection matrices are needed").

numpy (and scikit-learn for the initialization) only. The features x ∈ R^F are standardized,
x̂ = (x − mean) / std (both fitted on the training data), and squashed into Ω:

    box:  z = c + s ⊙ tanh(w),                 w = E x̂ + e,
    ball: z = c + ρ tanh(|w|) w / |w|           (a radial squash; z = c at w = 0),

with c Ω's centre, s = (1 − margin) × its half-widths, ρ = (1 − margin) × its radius. E (d×F)
and e (d) are trained with θ and the output layer (``learn/reduced.py``); the gradient reaches
them through ∇u_h(0, z_i) and :meth:`InputLayer.vjp`. Every z lies strictly inside the central
part of Ω, where χ > 0, whatever E and e are: no data point can leave Ω.

The parameters q = (E row by row, e) are the last d(F + 1) entries of the run's parameter
vector p; :meth:`InputLayer.initial` starts them where a fixed projection would leave off
(PCA or LDA of x̂, scaled so that the first component's ±2 standard deviations reach
tanh(1) = 0.76 of the way to the margin). :meth:`InputLayer.pretrain` goes further: it fits
the layer and the output layer without the flow (u(0, x) = A z + b, the flow the identity), so
that training starts where that model ends and the flow has only to improve on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from solver.errors import InputError
from solver.model.domain import Ball, Domain

INPUT_KINDS = ("scaling", "learned")
INPUT_INITS = ("pca", "lda")
# The first principal component's ±SPREAD standard deviations map to w = ±1 at the start.
SPREAD = 2.0
# Below this |w| the ball's radial squash uses its Taylor series (tanh(r)/r = 1 − r²/3 + …).
SMALL = 1e-4


def squash(w: np.ndarray, center: np.ndarray, half: np.ndarray, ball: bool) -> np.ndarray:
    """z = c + s ⊙ tanh(w) (box) or c + ρ tanh(|w|) w/|w| (ball; ρ = ``half``'s entries) for
    w of shape=(n, d): the layer's last step, shared with the exported net (``resnet/net.py``)."""
    if not ball:
        return center + half * np.tanh(w)
    r = np.linalg.norm(w, axis=1, keepdims=True)
    # tanh(r)/r is accurate in floating point for every r > 0 (tanh(r) = r to round-off for tiny
    # r); only r = 0 needs its limit 1.
    r = np.maximum(r, np.finfo(np.float64).tiny)
    return center + half * (np.tanh(r) / r) * w


@dataclass(frozen=True, eq=False)
class InputLayer:
    """x ↦ z = c + s ⊙ tanh(E x̂ + e) (box) or its radial form (ball), x̂ the standardized x.

    Attributes:
        mean, std: the training features' mean and standard deviation, shape=(F,), std > 0.
        center: Ω's centre c, shape=(d,).
        half: s, shape=(d,) (box), or ρ in every entry (ball).
        ball: whether Ω is a ball (the radial squash).
        feature_names: the F feature names, for messages.
    """

    mean: np.ndarray
    std: np.ndarray
    center: np.ndarray
    half: np.ndarray
    ball: bool
    feature_names: tuple[str, ...] = ()

    @property
    def num_features(self) -> int:
        return len(self.mean)

    @property
    def dim(self) -> int:
        return len(self.center)

    @property
    def n_params(self) -> int:
        """d·(F + 1): E and e."""
        return self.dim * (self.num_features + 1)

    @classmethod
    def fit(cls, X: np.ndarray, domain: Domain, margin: float, feature_names=(), source: str | None = None,
            constant: str = "raise") -> InputLayer:
        """The layer for Ω and the training features ``X`` (shape=(n, F)): their standardization.

        ``constant``: what a feature constant over the training data gets: "raise" (the
        command line: a file's constant column is a mistake worth naming) or "ignore" (an
        estimator, as scikit-learn's take them: its x̂ is 0, std recorded as 1).

        Raises:
            InputError: (naming ``source``) a constant feature, with ``constant="raise"``.
        """
        X = np.asarray(X, dtype=np.float64)
        mean, std = X.mean(axis=0), X.std(axis=0)
        flat = ~(std > 1e-12 * np.maximum(np.abs(mean), 1.0))
        constant_columns = np.flatnonzero(flat)
        if constant == "ignore":
            std = np.where(flat, 1.0, std)
        elif constant_columns.size:
            names = [feature_names[j] if j < len(feature_names) else f"x{j + 1}" for j in constant_columns[:5]]
            raise InputError(f"{constant_columns.size} feature column(s) are constant over the training data "
                             f"(e.g. {names}): they carry nothing to learn from; remove them", source)
        center = 0.5 * (np.asarray(domain.lower, dtype=np.float64) + np.asarray(domain.upper, dtype=np.float64))
        if isinstance(domain, Ball):
            half = np.full(domain.dim, (1.0 - margin) * domain.radius)
        else:
            half = (1.0 - margin) * 0.5 * (np.asarray(domain.upper) - np.asarray(domain.lower))
        return cls(mean, std, center, np.asarray(half, dtype=np.float64), isinstance(domain, Ball),
                   tuple(feature_names))

    # --- parameters --------------------------------------------------------------------

    def split(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """q → (E, shape=(d, F); e, shape=(d,))."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (self.n_params,):
            raise InputError(f"input layer parameters must have shape ({self.n_params},), got {q.shape}")
        d, F = self.dim, self.num_features
        return q[: d * F].reshape(d, F), q[d * F :]

    def initial(self, X: np.ndarray, y: np.ndarray | None = None, init: str = "pca") -> np.ndarray:
        """Starting q from the training features ``X`` (shape=(n, F)): E the first d principal
        directions of x̂ (``pca``), or the discriminant directions of the classes ``y`` (``lda``,
        topped up with principal directions when K − 1 < d), scaled by :data:`SPREAD`; e = 0."""
        if init not in INPUT_INITS:
            raise InputError(f'Invalid input.init "{init}". Must be one of {list(INPUT_INITS)}')
        x = self.standardize(X)
        d, F = self.dim, self.num_features
        _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
        directions = list(vt[:d])
        if init == "lda" and y is not None:
            from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

            k = min(d, len(np.unique(y)) - 1, F)
            lda = LinearDiscriminantAnalysis(n_components=k).fit(x, y)
            found = lda.scalings_[:, :k].T
            found = found / np.linalg.norm(found, axis=1, keepdims=True)
            # The principal directions fill the rest, made orthogonal to the discriminant ones.
            basis = np.linalg.qr(np.concatenate([found, vt]).T)[0].T
            directions = list(found) + list(basis[k:d])
        E = np.zeros((d, F))
        for j, v in enumerate(directions[:d]):
            E[j, : len(v)] = v
        spread = np.std(x @ E.T, axis=0)
        E *= 1.0 / (SPREAD * max(float(spread.max(initial=0.0)), 1e-12))
        return np.concatenate([E.ravel(), np.zeros(d)])

    def pretrain(self, q: np.ndarray, X: np.ndarray, targets: np.ndarray, num_outputs: int, loss: str,
                 decay: float, iterations: int, seed: int = 0,
                 restart: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """The layer and the output layer fitted without the flow: minimize
        (1/n) Σ_i loss(A z_i + b, y_i) + (δ/2)|E|², z = self(q, X), by L-BFGS (``learn/optimize.py``) from ``q``
        and a seeded random A (b = 0), at most ``iterations`` iterations.

        The objective has many local minima (10 classes through 3 dimensions): ``restart`` r
        starts A from the r-th seeded draw, and the caller keeps the restart of the lowest
        objective (``learn/train.py``, ``input.restarts``).

        Args:
            q: the starting layer parameters (:meth:`initial`), shape=(n_params,).
            X: all training features, shape=(n, F); targets: their labels, shape=(n,) (ints,
                cross-entropy) or standardized targets, shape=(n,) or (n, K) (squared error).
            num_outputs: K; loss: "cross_entropy" or "squared_error"; decay: δ.
            seed, restart: A's start is drawn from ``default_rng(seed + 7919 + restart)``.

        Returns:
            (q, shape=(n_params,); A, shape=(K, d); b, shape=(K,); the objective there).
            Deterministic: every rank that calls it with the same arguments gets the same
            numbers (no communication).
        """
        from solver.learn import optimize  # the training's own L-BFGS (scipy's L-BFGS-B took 11 of
        # 15 s inside its Fortran core for 1000 iterations on digits, 235 parameters, machine loaded)
        from solver.model.losses import cross_entropy, squared_error

        fn = cross_entropy if loss == "cross_entropy" else squared_error
        d, K, n, m = self.dim, num_outputs, len(X), self.n_params
        n_E = d * self.num_features
        A0 = np.random.default_rng(seed + 7919 + restart).normal(0.0, 1.0 / np.sqrt(d), (K, d))

        x = self.standardize(X)  # once: the objective below is called some thousand times

        def objective(v):
            qv, A, b = v[:m], v[m : m + K * d].reshape(K, d), v[m + K * d :]
            w = self._pre(qv, x)
            z = squash(w, self.center, self.half, self.ball)
            value, g = fn(A @ z.T + b[:, None], targets)  # g: shape=(K, n)
            g = g / n
            E = qv[:n_E]
            gw = self._pre_cotangent(w, g.T @ A)
            gq = np.concatenate([(gw.T @ x).ravel() + decay * E, gw.sum(axis=0)])
            return value / n + 0.5 * decay * float(E @ E), np.concatenate([gq, (g @ z).ravel(), g.sum(axis=1)])

        start = np.concatenate([np.asarray(q, dtype=np.float64), A0.ravel(), np.zeros(K)])
        state = optimize.start(objective, start)
        for _ in range(iterations):
            try:
                state = optimize.lbfgs_step(objective, state)
            except optimize.NoDecrease:  # converged to what the line search can resolve
                break
        v = state.p
        return v[:m], v[m : m + K * d].reshape(K, d), v[m + K * d :], float(state.value)

    # --- the map and its vector-Jacobian product ------------------------------------------

    def standardize(self, X: np.ndarray) -> np.ndarray:
        """x̂ = (x − mean) / std, shape=(n, F)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.num_features:
            raise InputError(f"the input layer takes {self.num_features} features, got data of shape {X.shape}")
        return (X - self.mean) / self.std

    def pre(self, q: np.ndarray, X: np.ndarray) -> np.ndarray:
        """w = E x̂ + e, shape=(n, d)."""
        return self._pre(q, self.standardize(X))

    def _pre(self, q: np.ndarray, x: np.ndarray) -> np.ndarray:
        """w = E x + e for standardized features ``x``, shape=(n, d)."""
        E, e = self.split(q)
        return x @ E.T + e

    def __call__(self, q: np.ndarray, X: np.ndarray) -> np.ndarray:
        """z, shape=(n, d), strictly inside Ω's central part."""
        return squash(self.pre(q, X), self.center, self.half, self.ball)

    def folded(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The standardization folded into E and e: w = W x + c with W = E / std (shape=(d, F))
        and c = e − W mean (shape=(d,)), the exported net's first layer."""
        E, e = self.split(q)
        W = E / self.std
        return W, e - W @ self.mean

    def vjp(self, q: np.ndarray, X: np.ndarray, gz: np.ndarray) -> np.ndarray:
        """(∂z/∂q)ᵀ gz for the cotangents ``gz`` (shape=(n, d)) of z: shape=(n_params,)."""
        x = self.standardize(X)
        gw = self._pre_cotangent(self._pre(q, x), gz)
        return np.concatenate([(gw.T @ x).ravel(), gw.sum(axis=0)])

    def _pre_cotangent(self, w: np.ndarray, gz: np.ndarray) -> np.ndarray:
        """(∂z/∂w)ᵀ gz at w = E x̂ + e, shape=(n, d): the squash's transpose."""
        if not self.ball:
            return gz * self.half * (1.0 - np.tanh(w) ** 2)
        g, dg = self._radial(w)  # z − c = ρ g(r) w, dz = ρ (g dw + (g'(r)/r) w (w·dw))
        return self.half[0] * (g[:, None] * gz + (dg * np.sum(w * gz, axis=1))[:, None] * w)

    @staticmethod
    def _radial(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """g(r) = tanh(r)/r and g'(r)/r at r = |w_i|, shape=(n,) each (series for small r: g = 1 − r²/3 + …, g'/r = −2/3 + 8r²/15 + …)."""
        r = np.linalg.norm(w, axis=1)
        small = r < SMALL
        rs = np.where(small, 1.0, r)
        t = np.tanh(rs)
        g = np.where(small, 1.0 - r**2 / 3.0, t / rs)
        dg = np.where(small, -2.0 / 3.0 + 8.0 * r**2 / 15.0, ((1.0 - t**2) * rs - t) / rs**3)
        return g, dg

    # --- the run directory ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what theta.npz's meta records (``input``)."""
        return {"kind": "learned", "mean": self.mean.tolist(), "std": self.std.tolist(),
                "center": self.center.tolist(), "half": self.half.tolist(), "ball": bool(self.ball),
                "feature_names": list(self.feature_names)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputLayer:
        """The inverse of :meth:`to_dict`."""
        try:
            layer = cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64),
                        np.asarray(d["center"], dtype=np.float64), np.asarray(d["half"], dtype=np.float64),
                        bool(d["ball"]), tuple(map(str, d.get("feature_names", ()))))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"not an input layer record ({type(e).__name__}: {e})") from None
        if layer.mean.shape != layer.std.shape or layer.center.shape != layer.half.shape or not np.all(layer.std > 0):
            raise InputError("not an input layer record: inconsistent shapes or std <= 0")
        return layer
