"""Seeded on-the-fly meta-dataset for MIST: distributions of (X, Y) with closed-form MI (nats).

A *family* is a (structure, transform) pair, named ``"<structure>-<transform>"``, e.g.
``"gauss-sparse-wiggly"``. A family plus dimensions ``dx, dy`` and a seed gives a :class:`Task`
(hyper-parameters drawn from the family's prior); ``task.sample(n, rng)`` draws ``n`` pairs.

Structures (base distributions, every one defined for any ``dx, dy >= 1``):

* ``gauss-*``: ``(X, Y) ~ N(0, Sigma)`` with ``Sigma = A A^T + diag(eps^2)`` from a linear
  latent-variable model (:func:`lvm_covariance`); ``I = 1/2 (log|S_xx| + log|S_yy| - log|S|)``.

  - ``dense``: one latent shared by every coordinate; all correlations ``rho ~ U[0, 0.5]``.
  - ``sparse``: ``k ~ U{1..min(dx, dy)}`` interacting pairs ``X_i = lam Z_i + E_i``,
    ``Y_i = lam Z_i + F_i`` (``lam ~ U[0.1, 5]``); the other coordinates are independent noise.
  - ``2pair``: ``sparse`` with ``k = min(2, dx, dy)``.
  - ``lvm``: ``sparse`` plus a latent shared by all coordinates (weight ``alpha ~ U[0, 1]``),
    one latent per block (``beta ~ U[0, 1.5]``) and block-private latents on the non-interacting
    coordinates (``eta ~ U[0.1, 5]``); ``lam ~ U[0.1, 3]``.

* ``student-*``: the same dispersion matrices, ``(X, Y) = G / sqrt(W / nu)`` with
  ``G ~ N(0, Sigma)``, ``W ~ chi2(nu)``, ``nu ~ U[1, 10]``. The marginals are t with the same
  ``nu``, so ``I = I_gauss(Sigma) + h_t(dx) + h_t(dy) - h_t(dx + dy)`` where
  ``h_t(k) = -lgamma((nu+k)/2) + lgamma(nu/2) + k/2 log(nu pi) + (nu+k)/2 (psi((nu+k)/2) - psi(nu/2))``
  is the entropy of a standard k-variate t (the ``log|S|/2`` terms give ``I_gauss``).

* ``additive``: ``X_j ~ U(0, 1)``; ``Y_j = X_j + U(-e_j, e_j)`` for ``j < min(dx, dy)``
  (``e_j ~ U[0.1, 2]``); coordinates beyond ``min(dx, dy)`` on the larger side are independent
  ``U(0, 1)``. ``I = sum_j [e_j - log(2 e_j)]`` if ``e_j <= 1/2`` else ``1 / (4 e_j)``.

Transforms, applied to X and Y separately after sampling (MI is invariant to injective maps of X
and of Y, so the target is the base MI):

* ``base``: none; ``halfcube``: ``t sqrt|t|``; ``asinh``; ``wiggly``: a sine-perturbed identity,
  a different one for X and for Y (both strictly increasing);
* ``flow``: a random normalising flow with fixed random weights (:class:`RandomFlow`): two
  layers of [random orthogonal mixing, affine coupling with a random tanh-MLP conditioner,
  strictly increasing elementwise map]; exactly invertible (the inverse is implemented).

Every task also permutes the columns of X and of Y and applies a random per-column affine map
(scale log-uniform in [0.1, 10], shift N(0, 4)); neither changes the MI.

Splits (:data:`SPLITS`): ``train``; ``val`` (training families not in any test grid plus five
held-out families); ``test_imd`` (training families, fresh seeds, none in ``val``); ``test_unseen``
(structure x transform pairs in neither ``train`` nor ``val``). ``val`` is disjoint from both test
grids, and ``test_unseen`` from ``train`` (checked at import).

Seeds are full width: a set is drawn with ``numpy.random.default_rng([seed, stream, index])``
(a ``SeedSequence`` hashes all words), so there is no small seed space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from .structures import (
    _orthogonal,
    curve_pointwise_mi,
    draw_curve,
    draw_mixture,
    mixture_pointwise_mi,
    pairs_covariance,
    sample_curve,
    sample_mixture,
)

__all__ = [
    "STRUCTURES",
    "TRANSFORMS",
    "SPLITS",
    "Task",
    "RandomFlow",
    "family_name",
    "parse_family",
    "draw_task",
    "lvm_covariance",
    "gaussian_mi",
    "student_t_entropy",
    "student_mi_correction",
    "additive_mi",
    "pointwise_mi",
    "MetaSet",
    "draw_set",
    "make_grid",
    "mi_quantile",
]

#: structures and transforms of the first meta-prior (the ``train``/``val``/``test_*`` splits)
STRUCTURES_V1 = (
    "gauss-dense",
    "gauss-sparse",
    "gauss-2pair",
    "gauss-lvm",
    "student-dense",
    "student-sparse",
    "student-2pair",
    "student-lvm",
    "additive",
)
TRANSFORMS_V1 = ("base", "halfcube", "asinh", "wiggly", "flow")
#: every structure (the second meta-prior adds ``pairs``, ``curve`` and ``mixture``; see
#: :mod:`pyromi.mist.structures`) and every transform (``spiral`` is only ever a test transform)
STRUCTURES = STRUCTURES_V1 + ("gauss-pairs", "student-pairs", "curve", "mixture")
TRANSFORMS = TRANSFORMS_V1 + ("spiral",)


def family_name(structure: str, transform: str) -> str:
    """``"<structure>-<transform>"``."""
    return f"{structure}-{transform}"


def parse_family(family: str) -> tuple[str, str]:
    """Inverse of :func:`family_name`; raises ``ValueError`` for unknown names."""
    structure, _, transform = family.rpartition("-")
    if structure not in STRUCTURES or transform not in TRANSFORMS:
        raise ValueError(
            f"unknown family {family!r}: expected '<structure>-<transform>' with structure in "
            f"{STRUCTURES} and transform in {TRANSFORMS}"
        )
    return structure, transform


def _fams(spec: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(family_name(s, t) for s, ts in spec.items() for t in ts)


_TEST_IMD = _fams(
    {
        "gauss-dense": ("base",),
        "gauss-sparse": ("flow",),
        "gauss-lvm": ("wiggly",),
        "student-dense": ("base",),
        "student-sparse": ("asinh",),
        "student-2pair": ("halfcube",),
        "additive": ("base",),
    }
)
_VAL_IN = _fams(
    {
        "gauss-dense": ("asinh",),
        "gauss-sparse": ("wiggly",),
        "gauss-2pair": ("base",),
        "student-dense": ("flow",),
        "student-sparse": ("base",),
        "additive": ("wiggly",),
    }
)
_VAL_HELD_OUT = _fams(
    {
        "gauss-2pair": ("flow",),
        "gauss-lvm": ("halfcube",),
        "student-lvm": ("wiggly",),
        "student-2pair": ("wiggly",),
        "additive": ("asinh",),
    }
)
_TEST_UNSEEN = _fams(
    {
        "gauss-dense": ("wiggly",),
        "gauss-sparse": ("halfcube",),
        "gauss-lvm": ("flow",),
        "student-dense": ("halfcube",),
        "student-sparse": ("flow",),
        "student-lvm": ("flow",),
        "additive": ("halfcube", "flow"),
    }
)
_ALL = tuple(family_name(s, t) for s in STRUCTURES_V1 for t in TRANSFORMS_V1)
#: Training families: every family that is neither held out for validation nor in the unseen grid.
_TRAIN = tuple(f for f in _ALL if f not in _VAL_HELD_OUT and f not in _TEST_UNSEEN)

# Second meta-prior (``*_v2``): every v1 family plus the new structures. Test-only: the
# ``mixture`` structure and the ``spiral`` transform (never trained, validated or calibrated on),
# plus the v1 unseen grid and a few new (structure, transform) pairs.
_TEST_UNSEEN_V2 = _TEST_UNSEEN + _fams(
    {
        "mixture": ("base", "flow", "asinh"),
        "gauss-sparse": ("spiral",),
        "student-dense": ("spiral",),
        "gauss-pairs": ("spiral", "halfcube"),
        "curve": ("spiral", "halfcube"),
        "student-pairs": ("flow",),
    }
)
_TRAIN_V2 = tuple(
    family_name(s, t)
    for s in STRUCTURES
    for t in TRANSFORMS
    if s != "mixture" and t != "spiral" and family_name(s, t) not in _TEST_UNSEEN_V2
)

#: Named splits of the (structure, transform) families.
SPLITS: dict[str, tuple[str, ...]] = {
    "train": _TRAIN,
    "val": _VAL_IN + _VAL_HELD_OUT,
    "val_held_out": _VAL_HELD_OUT,
    "test_imd": _TEST_IMD,
    "test_unseen": _TEST_UNSEEN,
    "train_v2": _TRAIN_V2,
    "test_imd_v2": _TEST_IMD + _fams({"gauss-pairs": ("base",), "curve": ("flow",), "student-pairs": ("wiggly",)}),
    "test_unseen_v2": _TEST_UNSEEN_V2,
}


def _check_splits() -> None:
    val, imd, unseen, train = (set(SPLITS[k]) for k in ("val", "test_imd", "test_unseen", "train"))
    assert not val & imd and not val & unseen, "validation families leak into a test grid"
    assert imd <= train and not unseen & train, "test_imd must be trained on, test_unseen must not"
    assert set(_VAL_IN) <= train and not set(_VAL_HELD_OUT) & train
    train2, imd2, unseen2 = (set(SPLITS[k]) for k in ("train_v2", "test_imd_v2", "test_unseen_v2"))
    assert imd2 <= train2 and not unseen2 & train2, "v2: test_unseen_v2 must never be trained on"
    assert not any(f.startswith("mixture") or f.endswith("spiral") for f in train2)


_check_splits()

# ----------------------------------------------------------------------------- closed-form MI


def lvm_covariance(
    dx: int,
    dy: int,
    *,
    k: int,
    lam: float,
    alpha: float = 0.0,
    beta: float = 0.0,
    eta: float = 0.0,
    eps: float = 1.0,
) -> np.ndarray:
    """Covariance ``A A^T + eps^2 I`` of the linear latent-variable model on ``(X, Y)``.

    Latents (independent N(0, 1)) and their loadings: one shared by all ``dx + dy`` coordinates
    (``alpha``); one per block, X and Y (``beta``); ``Z_i`` for ``i < k`` loading ``lam`` on
    ``X_i`` and ``Y_i``; a private latent per non-interacting coordinate (``eta``). Every
    coordinate also has its own noise of standard deviation ``eps``.
    """
    if not 0 <= k <= min(dx, dy):
        raise ValueError(f"k={k} interacting pairs needs 0 <= k <= min(dx, dy) = {min(dx, dy)}")
    d = dx + dy
    cols = []
    cols.append(np.full(d, alpha))
    bx = np.zeros(d)
    bx[:dx] = beta
    by = np.zeros(d)
    by[dx:] = beta
    cols += [bx, by]
    for i in range(k):
        z = np.zeros(d)
        z[i] = z[dx + i] = lam
        cols.append(z)
    for j in list(range(k, dx)) + list(range(dx + k, d)):
        v = np.zeros(d)
        v[j] = eta
        cols.append(v)
    a = np.stack(cols, 1)
    return a @ a.T + eps**2 * np.eye(d)


def gaussian_mi(cov: np.ndarray, dx: int) -> float:
    """``I(X; Y) = 1/2 (log|S_xx| + log|S_yy| - log|S|)`` for ``(X, Y) ~ N(., S)``, X the first ``dx``."""
    ld = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    return float(0.5 * (ld(cov[:dx, :dx]) + ld(cov[dx:, dx:]) - ld(cov)))


def student_t_entropy(k: int, nu: float) -> float:
    """Differential entropy of a standard k-variate Student t with ``nu`` degrees of freedom (nats):
    ``-lgamma((nu+k)/2) + lgamma(nu/2) + k/2 log(nu pi) + (nu+k)/2 (psi((nu+k)/2) - psi(nu/2))``."""
    a = 0.5 * (nu + k)
    return float(
        -special.gammaln(a)
        + special.gammaln(0.5 * nu)
        + 0.5 * k * math.log(nu * math.pi)
        + a * (special.digamma(a) - special.digamma(0.5 * nu))
    )


def student_mi_correction(dx: int, dy: int, nu: float) -> float:
    """``h_t(dx) + h_t(dy) - h_t(dx + dy) >= 0``: the MI a shared t scale adds to the Gaussian MI."""
    return student_t_entropy(dx, nu) + student_t_entropy(dy, nu) - student_t_entropy(dx + dy, nu)


def additive_mi(eps: np.ndarray) -> float:
    """``sum_j I(X_j; X_j + U(-e_j, e_j))`` with ``X_j ~ U(0, 1)``: ``e - log(2e)`` for ``e <= 1/2``,
    else ``1 / (4e)``."""
    e = np.asarray(eps, dtype=np.float64)
    return float(np.where(e <= 0.5, e - np.log(2 * e), 0.25 / e).sum())


# ----------------------------------------------------------------------------- transforms


def half_cube(t: np.ndarray) -> np.ndarray:
    """``t sqrt|t|`` (strictly increasing)."""
    return t * np.sqrt(np.abs(t))


def wiggly_x(t: np.ndarray) -> np.ndarray:
    """``t + 0.4 sin t + 0.2 sin(1.7 t + 1) + 0.03 sin(3.3 t - 2.5)``; slope >= 1 - 0.839 > 0."""
    return t + 0.4 * np.sin(t) + 0.2 * np.sin(1.7 * t + 1) + 0.03 * np.sin(3.3 * t - 2.5)


def wiggly_y(t: np.ndarray) -> np.ndarray:
    """``t + 0.3 sin(1.3 t + 0.5) + 0.25 sin(0.7 t - 1) + 0.05 sin(4 t)``; slope >= 1 - 0.765 > 0."""
    return t + 0.3 * np.sin(1.3 * t + 0.5) + 0.25 * np.sin(0.7 * t - 1) + 0.05 * np.sin(4 * t)


_MONOTONE = {
    "base": (lambda t: t, lambda t: t),
    "halfcube": (half_cube, half_cube),
    "asinh": (np.arcsinh, np.arcsinh),
    "wiggly": (wiggly_x, wiggly_y),
}


def spiral_params(d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """A random plane (orthonormal ``e1, e2``) and speed ``v ~ U[1, 3]`` for :func:`spiral`."""
    if d < 2:
        return np.zeros(d), np.zeros(d), 0.0
    q = _orthogonal(d, rng)
    return q[:, 0], q[:, 1], float(rng.uniform(1.0, 3.0))


def spiral(t: np.ndarray, e1: np.ndarray, e2: np.ndarray, v: float) -> np.ndarray:
    """Rotate each row in the plane ``(e1, e2)`` by the angle ``v |t|^2 / d``: the norm is kept, so
    the angle and the map can be inverted; non-monotone in every coordinate (identity for d = 1)."""
    if v == 0.0:
        return t
    a, b = t @ e1, t @ e2
    th = v * (t * t).sum(1) / t.shape[1]
    c, s = np.cos(th), np.sin(th)
    da, db = a * (c - 1) - b * s, a * s + b * (c - 1)
    return t + da[:, None] * e1 + db[:, None] * e2


def _tanh_bump(t: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return t + a * np.tanh(b * t + c)


@dataclass
class RandomFlow:
    """A fixed random normalising flow on R^d: ``layers`` x [orthogonal Q, affine coupling,
    elementwise ``t + a tanh(b t + c)``] with ``a >= 0, b > 0`` (strictly increasing).

    Coupling: ``x_B <- x_B * exp(s(x_A)) + t(x_A)`` with ``s = 0.7 tanh(.)``, a one-hidden-layer
    tanh MLP of the other half ``x_A``; invertible for any weights. For ``d = 1`` only the
    elementwise maps remain.
    """

    d: int
    layers: list[dict[str, np.ndarray]] = field(default_factory=list)

    @classmethod
    def random(cls, d: int, rng: np.random.Generator, num_layers: int = 2, hidden: int = 8) -> "RandomFlow":
        layers = []
        for _ in range(num_layers):
            p: dict[str, np.ndarray] = {}
            if d >= 2:
                q, r = np.linalg.qr(rng.standard_normal((d, d)))
                p["Q"] = q * np.sign(np.diag(r))
                p["perm"] = rng.permutation(d)
                da = d // 2
                db = d - da
                p["W1"] = rng.standard_normal((da, hidden)) * 1.5 / math.sqrt(da)
                p["b1"] = rng.standard_normal(hidden) * 0.5
                p["Ws"] = rng.standard_normal((hidden, db)) / math.sqrt(hidden)
                p["Wt"] = rng.standard_normal((hidden, db)) * 1.5 / math.sqrt(hidden)
            p["a"] = rng.uniform(0.0, 1.5, d)
            p["b"] = rng.uniform(0.5, 2.0, d)
            p["c"] = rng.uniform(-1.0, 1.0, d)
            layers.append(p)
        return cls(d, layers)

    def _st(self, p: dict[str, np.ndarray], xa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = np.tanh(xa @ p["W1"] + p["b1"])
        return 0.7 * np.tanh(h @ p["Ws"]), h @ p["Wt"]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply the flow to the rows of ``x`` ``(n, d)``."""
        for p in self.layers:
            if self.d >= 2:
                x = (x @ p["Q"].T)[:, p["perm"]]
                da = self.d // 2
                xa, xb = x[:, :da], x[:, da:]
                s, t = self._st(p, xa)
                x = np.concatenate([xa, xb * np.exp(s) + t], 1)
            x = _tanh_bump(x, p["a"], p["b"], p["c"])
        return x

    def inverse(self, y: np.ndarray, iters: int = 100) -> np.ndarray:
        """Exact inverse (the elementwise maps by bisection to machine precision)."""
        for p in reversed(self.layers):
            lo = y - p["a"] - 1e-9  # t + a tanh(.) lies within a of t
            hi = y + p["a"] + 1e-9
            for _ in range(iters):
                mid = 0.5 * (lo + hi)
                below = _tanh_bump(mid, p["a"], p["b"], p["c"]) < y
                lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
            y = 0.5 * (lo + hi)
            if self.d >= 2:
                da = self.d // 2
                xa, yb = y[:, :da], y[:, da:]
                s, t = self._st(p, xa)
                y = np.concatenate([xa, (yb - t) * np.exp(-s)], 1)
                inv = np.empty_like(p["perm"])
                inv[p["perm"]] = np.arange(self.d)
                y = y[:, inv] @ p["Q"]
        return y


# ----------------------------------------------------------------------------- tasks


@dataclass
class Task:
    """One distribution: family, dimensions, hyper-parameters, closed-form MI (nats)."""

    family: str
    dx: int
    dy: int
    mi: float
    params: dict[str, Any]

    @property
    def structure(self) -> str:
        return parse_family(self.family)[0]

    @property
    def transform(self) -> str:
        return parse_family(self.family)[1]

    def sample_base(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` draws of the base distribution (before transforms, permutations, affine maps)."""
        p, dx = self.params, self.dx
        if self.structure == "curve":
            return sample_curve(p, dx, self.dy, n, rng)
        if self.structure == "mixture":
            return sample_mixture(p, dx, self.dy, n, rng)
        if self.structure == "additive":
            x = rng.uniform(0.0, 1.0, (n, dx))
            y = rng.uniform(0.0, 1.0, (n, self.dy))
            e = p["eps"]
            m = len(e)
            y[:, :m] = x[:, :m] + rng.uniform(-1.0, 1.0, (n, m)) * e
            return x, y
        g = rng.standard_normal((n, dx + self.dy)) @ p["chol"].T
        if self.structure.startswith("student"):
            g = g / np.sqrt(rng.chisquare(p["nu"], (n, 1)) / p["nu"])
        return g[:, :dx], g[:, dx:]

    def transform_block(self, t: np.ndarray, which: str) -> np.ndarray:
        """The injective map applied to the X (``which="x"``) or Y block of a base sample."""
        p = self.params
        if self.transform == "flow":
            t = p[f"flow_{which}"].forward(t)
        elif self.transform == "spiral":
            t = spiral(t, *p[f"spiral_{which}"])
        else:
            t = _MONOTONE[self.transform][0 if which == "x" else 1](t)
        t = t[:, p[f"perm_{which}"]]
        return t * p[f"scale_{which}"] + p[f"shift_{which}"]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` i.i.d. pairs ``x (n, dx)``, ``y (n, dy)`` (float64)."""
        xb, yb = self.sample_base(n, rng)
        return self.transform_block(xb, "x"), self.transform_block(yb, "y")


def _dispersion(structure: str, dx: int, dy: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    kind = structure.split("-")[1]
    m = min(dx, dy)
    if kind == "dense":
        rho = rng.uniform(0.0, 0.5)
        return lvm_covariance(dx, dy, k=0, lam=0.0, alpha=math.sqrt(rho), eps=math.sqrt(1 - rho)), {"rho": rho}
    if kind in ("sparse", "2pair"):
        k = int(rng.integers(1, m + 1)) if kind == "sparse" else min(2, m)
        lam = rng.uniform(0.1, 5.0)
        return lvm_covariance(dx, dy, k=k, lam=lam, eta=lam), {"k": k, "lam": lam}
    if kind == "pairs":
        return pairs_covariance(dx, dy, rng)
    if kind == "lvm":
        k = int(rng.integers(1, m + 1))
        h = {
            "k": k,
            "alpha": rng.uniform(0.0, 1.0),
            "lam": rng.uniform(0.1, 3.0),
            "beta": rng.uniform(0.0, 1.5),
            "eta": rng.uniform(0.1, 5.0),
        }
        return lvm_covariance(dx, dy, **h), h
    raise ValueError(f"unknown structure {structure!r}")


def _draw_dependence(structure: str, dx: int, dy: int, rng: np.random.Generator,
                     mc_draws: int | None = None) -> tuple[float, dict]:
    """The dependence part of :func:`draw_task`: hyper-parameters of ``structure`` (dispersion or
    noise widths, t degrees of freedom) and the MI (closed form, or Monte Carlo with ``mc_draws``
    draws -- default :data:`~pyromi.mist.structures.MC_DRAWS` -- for ``curve`` and ``mixture``).
    Consumes ``rng`` exactly as :func:`draw_task` does before it draws the marginal transforms."""
    params: dict[str, Any] = {}
    if structure in ("curve", "mixture"):
        draw = draw_curve if structure == "curve" else draw_mixture
        return draw(dx, dy, rng, mc_draws) if mc_draws else draw(dx, dy, rng)
    if structure == "additive":
        eps = rng.uniform(0.1, 2.0, min(dx, dy))
        params["eps"] = eps
        return additive_mi(eps), params
    cov, h = _dispersion(structure, dx, dy, rng)
    params.update(h)
    params["cov"] = cov
    mi = gaussian_mi(cov, dx)
    if structure.startswith("student"):
        nu = rng.uniform(1.0, 10.0)
        params["nu"] = nu
        mi += student_mi_correction(dx, dy, nu)
    return float(mi), params


def draw_task(family: str, dx: int, dy: int, rng: np.random.Generator) -> Task:
    """Draw a task of ``family`` with ``dx, dy >= 1`` from the family's hyper-parameter prior."""
    structure, transform = parse_family(family)
    if dx < 1 or dy < 1:
        raise ValueError(f"dx and dy must be >= 1, got dx={dx}, dy={dy}")
    mi, params = _draw_dependence(structure, dx, dy, rng)
    if "cov" in params:
        params["chol"] = np.linalg.cholesky(params["cov"])
    for which, d in (("x", dx), ("y", dy)):
        if transform == "flow":
            params[f"flow_{which}"] = RandomFlow.random(d, rng)
        elif transform == "spiral":
            params[f"spiral_{which}"] = spiral_params(d, rng)
        params[f"perm_{which}"] = rng.permutation(d)
        params[f"scale_{which}"] = np.exp(rng.uniform(math.log(0.1), math.log(10.0), d))
        params[f"shift_{which}"] = rng.normal(0.0, 2.0, d)
    return Task(family, dx, dy, float(mi), params)


def pointwise_mi(task: Task, xb: np.ndarray, yb: np.ndarray) -> np.ndarray:
    """``log p(x, y) - log p(x) - log p(y)`` at base draws (its mean is the MI; for Monte Carlo checks)."""
    from scipy import stats

    dx = task.dx
    if task.structure == "curve":
        return curve_pointwise_mi(task.params, xb, yb)
    if task.structure == "mixture":
        return mixture_pointwise_mi(task.params, xb, yb)
    if task.structure == "additive":
        e = task.params["eps"]
        m = len(e)
        yy = yb[:, :m]
        overlap = np.minimum(yy + e, 1.0) - np.maximum(yy - e, 0.0)  # p(y_j) = overlap / (2 e_j)
        return -np.log(overlap).sum(1)
    cov = task.params["cov"]
    if task.structure.startswith("gauss"):
        lp = lambda z, c: stats.multivariate_normal(np.zeros(len(c)), c).logpdf(z)  # noqa: E731
    else:
        nu = task.params["nu"]
        lp = lambda z, c: stats.multivariate_t(np.zeros(len(c)), c, df=nu).logpdf(z)  # noqa: E731
    return (
        lp(np.concatenate([xb, yb], 1), cov) - lp(xb, cov[:dx, :dx]) - lp(yb, cov[dx:, dx:])
    ).reshape(-1)


# ----------------------------------------------------------------------------- meta-sets


@dataclass
class MetaSet:
    """One meta-datapoint: a sample and its true MI."""

    x: np.ndarray
    y: np.ndarray
    mi: float
    family: str


def draw_set(
    families: tuple[str, ...] | list[str],
    n: int,
    rng: np.random.Generator,
    *,
    d_min: int = 1,
    d_max: int = 8,
) -> MetaSet:
    """A family uniformly from ``families``, ``dx, dy ~ U{d_min..d_max}`` independently, ``n`` pairs."""
    fam = families[int(rng.integers(len(families)))]
    dx, dy = (int(v) for v in rng.integers(d_min, d_max + 1, 2))
    task = draw_task(fam, dx, dy, rng)
    x, y = task.sample(n, rng)
    return MetaSet(x, y, task.mi, fam)


def make_grid(
    split: str,
    n_values: list[int] | tuple[int, ...],
    reps: int,
    *,
    seed: int,
    d_min: int = 1,
    d_max: int = 8,
) -> list[tuple[MetaSet, int, int]]:
    """A fixed evaluation grid: every family of ``split`` x every n x ``reps`` tasks (random dims).

    Returns ``(set, dx, dy)`` triples; deterministic in ``seed`` (stream ``hash(split)`` is avoided:
    the split's index in :data:`SPLITS` is used, so grids are reproducible across processes).
    """
    stream = list(SPLITS).index(split)
    out = []
    for fi, fam in enumerate(SPLITS[split]):
        for ni, n in enumerate(n_values):
            for r in range(reps):
                rng = np.random.default_rng([seed, stream, fi, ni, r])
                dx, dy = (int(v) for v in rng.integers(d_min, d_max + 1, 2))
                task = draw_task(fam, dx, dy, rng)
                x, y = task.sample(int(n), rng)
                out.append((MetaSet(x, y, task.mi, fam), dx, dy))
    return out


#: Monte Carlo draws per ``curve``/``mixture`` task when only the MI's quantiles over a prior are
#: wanted (:func:`mi_quantile`, :func:`mi_quantile_shape`): the MI of those structures stays below
#: ~6 nats, far from the 99th percentile, so a noisier value changes nothing there
QUANTILE_MC_DRAWS = 100


def mi_quantile(families: tuple[str, ...] | list[str], d_max: int, q: float = 0.99, *, draws: int = 20000,
                seed: int = 0) -> float:
    """The ``q``-quantile of the true MI (nats) over the meta-prior of ``families`` with
    ``dx, dy ~ U{1..d_max}`` (families taken in turn), from ``draws`` draws (only the dependence
    hyper-parameters are drawn: the marginal transforms do not change the MI)."""
    rng = np.random.default_rng(seed)
    structures = [parse_family(f)[0] for f in families]
    mis = [_draw_dependence(structures[i % len(structures)], *map(int, rng.integers(1, d_max + 1, 2)), rng,
                            QUANTILE_MC_DRAWS)[0] for i in range(draws)]
    return float(np.quantile(mis, q))


def mi_quantile_shape(families: tuple[str, ...] | list[str], a: int, b: int, q: float = 0.99, *,
                      draws: int = 4000, seed: int = 0) -> float:
    """The ``q``-quantile of the true MI (nats) over the meta-prior of ``families`` conditional on
    the shape ``{dx, dy} = {a, b}``, from ``draws`` draws (families taken in turn; half drawn as
    ``(a, b)``, half as ``(b, a)``, since training swaps X and Y at random). Only the dependence
    hyper-parameters are drawn: the marginal transforms do not change the MI."""
    a, b = sorted((int(a), int(b)))
    rng = np.random.default_rng([seed, a, b])
    structures = [parse_family(f)[0] for f in families]
    mis = [
        _draw_dependence(structures[i % len(structures)], *((a, b) if i % 2 == 0 else (b, a)), rng, QUANTILE_MC_DRAWS)[0]
        for i in range(draws)
    ]
    return float(np.quantile(mis, q))


def mi_quantile_by_shape(families: tuple[str, ...] | list[str], d_max: int, q: float = 0.99, *,
                         draws: int = 4000, seed: int = 0) -> np.ndarray:
    """Symmetric ``(d_max, d_max)`` table of :func:`mi_quantile_shape`, entry ``[a - 1, b - 1]`` for
    the shape ``{a, b}``."""
    out = np.zeros((d_max, d_max))
    for a in range(1, d_max + 1):
        for b in range(a, d_max + 1):
            out[a - 1, b - 1] = out[b - 1, a - 1] = mi_quantile_shape(families, a, b, q, draws=draws, seed=seed)
    return out
