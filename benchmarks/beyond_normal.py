"""The "Beyond Normal" mutual-information benchmark tasks, in plain numpy/scipy.

Reimplements the task definitions of Czyż, Grabowski, Vogt, Beerenwinkel & Marx, "Beyond Normal:
On the Evaluation of Mutual Information Estimators", NeurIPS 2023 (the ``benchmark-mi`` / ``bmi``
package, github.com/cbg-ethz/bmi, MIT licence). No code is imported from ``bmi`` (it needs JAX);
the definitions follow ``bmi.benchmark.task_list.BENCHMARK_TASKS_LIST`` (the 40-task list behind
``bmi.benchmark.BENCHMARK_TASKS`` and the paper's workflows, unchanged since May 2023), with the
task ids used as names. Every task with ``dx <= 32`` and ``dy <= 32`` is kept; only
``multinormal-dense-50-50-0.5`` (50 x 50) is left out.

Task families (bmi module in brackets):

* bivariate normal, correlation 0.75 [``bivariate_normal``]: ``I = -1/2 log(1 - rho^2)``;
* additive uniform noise [``additive_noise``]: ``X ~ U(0, 1)``, ``Y = X + N``,
  ``N ~ U(-eps, eps)``; ``I = eps - log(2 eps)`` for ``eps <= 1/2``, else ``1 / (4 eps)``;
* bimodal [``bimodal_gaussians``]: the uniform task ``(Phi(X), Phi(Y))`` of the bivariate normal
  pushed through the inverse CDFs of ``0.3 N(0,1) + 0.7 N(5,1)`` (x) and ``0.5 N(-1,1) + 0.5 N(3,1)``
  (y); bmi inverts each CDF by bisection on ``[-10, 10]`` to ``1e-12``, and so does this module;
* multinormal dense [``multinormal.task_multinormal_dense``]: joint correlation matrix with all
  off-diagonal entries 0.5;
* multinormal 2-pair [``multinormal.task_multinormal_2pair``] (bmi's "sparse" with two interacting
  pairs, strength 2): the Gaussian latent-variable model with ``alpha = beta = 0``,
  ``lambda = eta = 2``, ``epsilon = 1``, whose correlation matrix is the identity except
  ``corr(X_i, Y_i) = 4/5`` for ``i = 1, 2``;
* Student-t identity [``student.task_student_identity``]: multivariate t with identity dispersion
  and ``df`` degrees of freedom (X and Y are uncorrelated but dependent through the shared scale);
  ``I = h(X) + h(Y) - h(X, Y)`` with the Student-t entropies of Arellano-Valle et al. (2013), as in
  ``bmi.samplers.SplitStudentT`` (the Gaussian part is 0 for the identity dispersion);
* transforms [``normal_cdf``, ``half_cube``, ``wiggly``, ``asinh``, ``spiral``, ``embeddings``]:
  coordinate-wise ``Phi``, ``x sqrt|x|``, the two "wiggly" maps and ``asinh``; the spiral
  ``x -> expm(||x||^2 / d * A) x`` with ``A`` the (0, 1) generator of so(dx) for X and the (1, 2)
  generator of so(dy) for Y; the Swiss roll ``u -> (t cos t, t sin t) / 21``,
  ``t = 3 pi (1 + 2u) / 2``, applied to the uniform X of the bivariate normal (a 2 x 1 task).

Truths. Every transform is injective and smooth with a smooth inverse on its image, so bmi keeps
the base task's MI (``TransformedSampler.mutual_information``). All truths are closed form;
bmi computes none of these tasks' truths numerically. Gaussian truths use
``1/2 (log det S_xx + log det S_yy - log det S)`` (bmi's entropy formula, clipped at 0), which equals
``-1/2 sum log(1 - rho_i^2)`` over the canonical correlations ``rho_i`` (stored on the task).

Sampling is float64 numpy (bmi samples in JAX float32 with its own PRNG, so samples are not
bitwise bmi's). bmi's benchmark workflows additionally standardise every sample column-wise
(``transform_rescale``), an affine map that leaves MI unchanged; ``sample`` here does not.

``base`` names the rank-equivalence class: tasks obtained from one another by coordinate-wise
strictly increasing maps (normal CDF, half-cube, wiggly, asinh, the bimodal inverse CDFs) share it
and, for one seed, draw samples whose per-column ranks coincide. The spiral and the Swiss roll mix
coordinates, so each spiral / Swiss-roll task is a class of its own (``spiral @ normal-CDF`` is not
rank-equivalent to ``spiral @ normal`` either).

Run ``python benchmarks/beyond_normal.py`` for a self-check: each task is sampled (n = 20000)
and its truth compared with an independent estimate (see ``_self_check``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
from scipy.special import digamma, gammaln, ndtr

__all__ = ["Task", "TASKS", "SKIPPED", "unique_by_rank", "MAX_DIM"]

MAX_DIM = 32
GAUSSIAN_CORRELATION = 0.75

Array = np.ndarray
Sampler = Callable[[int, np.random.Generator], "tuple[Array, Array]"]


# ----------------------------------------------------------------------------------------------
# Task


@dataclass(frozen=True)
class Task:
    """One benchmark distribution ``P(X, Y)`` with known ``I(X; Y)`` (nats).

    ``name`` is bmi's task id, ``title`` bmi's display name. ``base`` is the name of the
    rank-equivalence class (see the module docstring). ``canonical_correlations`` is set exactly
    when the copula of the task is Gaussian (a multinormal up to coordinate-wise increasing
    maps): then ``mi == -1/2 sum log(1 - rho_i^2)``. ``transforms`` lists the maps applied to the
    base distribution, innermost first; ``params`` holds the base's parameters (bmi's
    ``task_params``: ``rho``, ``off_diag``, ``strength``, ``df``, ``epsilon``).
    """

    name: str
    title: str
    dx: int
    dy: int
    mi: float
    base: str
    family: str
    transforms: tuple[str, ...] = ()
    canonical_correlations: tuple[float, ...] | None = None
    params: dict = field(default_factory=dict, compare=False)
    _sampler: Sampler = field(default=None, repr=False, compare=False)

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> tuple[Array, Array]:
        """``n`` i.i.d. draws: float64 arrays of shapes ``(n, dx)`` and ``(n, dy)``.

        ``rng`` is a ``numpy.random.Generator`` or a seed. Tasks sharing ``base`` consume the
        generator identically, so one seed gives rank-identical columns across them."""
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        n = int(n)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        x, y = self._sampler(n, rng)
        x = np.ascontiguousarray(x, dtype=np.float64)
        y = np.ascontiguousarray(y, dtype=np.float64)
        assert x.shape == (n, self.dx) and y.shape == (n, self.dy), (x.shape, y.shape)
        return x, y

    @property
    def is_base(self) -> bool:
        return self.name == self.base


def unique_by_rank(tasks: dict[str, Task] | Iterable[Task]) -> dict[str, Task]:
    """One task per ``base``: the untransformed base task when present, else the first listed.

    Returns ``{name: task}`` in the order of first appearance of each base."""
    items = list(tasks.values()) if isinstance(tasks, dict) else list(tasks)
    chosen: dict[str, Task] = {}
    for t in items:
        cur = chosen.get(t.base)
        if cur is None or (t.is_base and not cur.is_base):
            chosen[t.base] = t
    return {t.name: t for t in chosen.values()}


# ----------------------------------------------------------------------------------------------
# Base distributions


def _gaussian_mi(cov: Array, dx: int) -> float:
    """bmi's SplitMultinormal.mutual_information: h(X) + h(Y) - h(X, Y), clipped at 0."""
    ld = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    return max(0.0, 0.5 * (ld(cov[:dx, :dx]) + ld(cov[dx:, dx:]) - ld(cov)))


def _canonical_correlations(cov: Array, dx: int) -> tuple[float, ...]:
    """Singular values of ``Lx^-1 S_xy Ly^-T`` (descending); zeros dropped."""
    lx = np.linalg.cholesky(cov[:dx, :dx])
    ly = np.linalg.cholesky(cov[dx:, dx:])
    m = np.linalg.solve(lx, np.linalg.solve(ly, cov[dx:, :dx]).T)
    rho = np.linalg.svd(m, compute_uv=False)
    return tuple(float(r) for r in rho if r > 1e-12)


def _multinormal_sampler(cov: Array, dx: int) -> Sampler:
    chol = np.linalg.cholesky(cov)

    def sample(n, rng):
        xy = rng.standard_normal((n, cov.shape[0])) @ chol.T
        return xy[:, :dx], xy[:, dx:]

    return sample


def _multinormal_task(name: str, title: str, cov: Array, dx: int) -> Task:
    cov = np.asarray(cov, dtype=np.float64)
    if not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov)[0] <= 0:
        raise ValueError(f"{name}: covariance is not symmetric positive definite")
    return Task(
        name=name,
        title=title,
        dx=dx,
        dy=cov.shape[0] - dx,
        mi=_gaussian_mi(cov, dx),
        base=name,
        family="gaussian",
        canonical_correlations=_canonical_correlations(cov, dx),
        _sampler=_multinormal_sampler(cov, dx),
    )


def task_bivariate_normal(rho: float = GAUSSIAN_CORRELATION) -> Task:
    t = _multinormal_task(
        f"1v1-normal-{rho}", "Bivariate normal 1 × 1", np.array([[1.0, rho], [rho, 1.0]]), 1
    )
    # bmi's BivariateNormalSampler uses the closed form (equal to the determinant one to ~1e-16).
    return _replace(t, mi=float(-0.5 * np.log1p(-rho * rho)), params={"rho": rho})


def task_multinormal_dense(dx: int, dy: int, off_diag: float = 0.5) -> Task:
    cov = np.eye(dx + dy) * (1 - off_diag) + off_diag
    t = _multinormal_task(
        f"multinormal-dense-{dx}-{dy}-{off_diag}", f"Multinormal {dx} × {dy} (dense)", cov, dx
    )
    return _replace(t, params={"off_diag": off_diag})


def _lvm_correlation(dx: int, dy: int, n_interacting: int, lambd: float, eta: float) -> Array:
    """bmi's GaussianLVMParametrization(alpha=0, beta=0, epsilon=1, lambd, eta).correlation."""
    d = dx + dy
    cov = np.eye(d)  # epsilon^2 = 1 on the diagonal
    for i in range(n_interacting):
        j = dx + i
        cov[i, j] += lambd**2
        cov[j, i] += lambd**2
        cov[i, i] += lambd**2
        cov[j, j] += lambd**2
    for i in range(n_interacting, dx):
        cov[i, i] += eta**2
    for j in range(dx + n_interacting, d):
        cov[j, j] += eta**2
    s = np.sqrt(np.diag(cov))
    return cov / np.outer(s, s)


def task_multinormal_2pair(dx: int, dy: int, strength: float = 2.0) -> Task:
    n_int = 2
    cov = _lvm_correlation(dx, dy, n_int, strength, strength)
    t = _multinormal_task(
        f"multinormal-sparse-{dx}-{dy}-{n_int}-{strength}",
        f"Multinormal {dx} × {dy} (2-pair)",
        cov,
        dx,
    )
    return _replace(t, params={"n_interacting": n_int, "strength": strength})


def _student_entropy(k: int, df: float) -> float:
    """Differential entropy of the standard k-variate t (identity dispersion), Arellano-Valle et
    al. (2013) eq. 7, as in bmi's ``_differential_entropy`` (with log-gamma for stability)."""
    h = 0.5 * (df + k)
    return float(
        -gammaln(h) + gammaln(0.5 * df) + 0.5 * k * np.log(df * np.pi) + h * (digamma(h) - digamma(0.5 * df))
    )


def student_mi_correction(df: float, dx: int, dy: int) -> float:
    """MI of a Student-t with identity dispersion: h(X) + h(Y) - h(X, Y)."""
    return _student_entropy(dx, df) + _student_entropy(dy, df) - _student_entropy(dx + dy, df)


def task_student_identity(dx: int, dy: int, df: int) -> Task:
    d = dx + dy

    def sample(n, rng):
        z = rng.standard_normal((n, d))
        w = rng.chisquare(df, size=n) / df
        xy = z / np.sqrt(w)[:, None]
        return xy[:, :dx], xy[:, dx:]

    name = f"student-identity-{dx}-{dy}-{df}"
    return Task(
        name=name,
        title=f"Student-t {dx} × {dy} (dof={df})",
        dx=dx,
        dy=dy,
        mi=0.0 + student_mi_correction(df, dx, dy),  # Gaussian part: MI of N(0, I) = 0
        base=name,
        family="student",
        params={"df": df},
        _sampler=sample,
    )


def additive_noise_mi(eps: float) -> float:
    return 0.25 / eps if eps > 0.5 else eps - math.log(2 * eps)


def task_additive_noise(eps: float) -> Task:
    def sample(n, rng):
        x = rng.uniform(0.0, 1.0, size=(n, 1))
        noise = rng.uniform(-eps, eps, size=(n, 1))
        return x, x + noise

    name = f"1v1-additive-{eps}"
    return Task(
        name=name,
        title=f"Uniform 1 × 1 (additive noise={eps})",
        dx=1,
        dy=1,
        mi=additive_noise_mi(eps),
        base=name,
        family="additive",
        params={"epsilon": eps},
        _sampler=sample,
    )


# ----------------------------------------------------------------------------------------------
# Transforms (all act row-wise on (n, d) arrays)


def normal_cdf(x: Array) -> Array:
    return ndtr(x)


def half_cube(x: Array) -> Array:
    return x * np.sqrt(np.abs(x))


def wiggly_x(x: Array) -> Array:
    return x + 0.4 * np.sin(1.0 * x) + 0.2 * np.sin(1.7 * x + 1) + 0.03 * np.sin(3.3 * x - 2.5)


def wiggly_y(x: Array) -> Array:
    return x - 0.4 * np.sin(0.4 * x) + 0.17 * np.sin(1.3 * x + 3.5) + 0.02 * np.sin(4.3 * x - 2.5)


def invert_cdf(cdf: Callable[[Array], Array], lo: float = -10.0, hi: float = 10.0, delta: float = 1e-12):
    """bmi's ``invert_cdf``: bisection for the root of ``cdf(x) = u`` on ``[lo, hi]``, stopped when
    the bracket is below ``delta`` (or stops shrinking in floating point); returns its midpoint."""

    def icdf(u: Array) -> Array:
        u = np.asarray(u, dtype=np.float64)
        a = np.full(u.shape, lo)
        b = np.full(u.shape, hi)
        for _ in range(200):
            m = 0.5 * (a + b)
            active = (b - a > delta) & (m > a) & (m < b)
            if not active.any():
                break
            below = cdf(m) < u
            a = np.where(active & below, m, a)
            b = np.where(active & ~below, m, b)
        return 0.5 * (a + b)

    return icdf


def _mixture_cdf(weights, means):
    def cdf(x):
        return sum(w * ndtr(x - mu) for w, mu in zip(weights, means))

    return cdf


bimodal_icdf_x = invert_cdf(_mixture_cdf((0.3, 0.7), (0.0, 5.0)))
bimodal_icdf_y = invert_cdf(_mixture_cdf((0.5, 0.5), (-1.0, 3.0)))


def spiral(x: Array, i: int, j: int, speed: float) -> Array:
    """bmi's ``Spiral(so_generator(d, i, j), speed)``: rotate the (i, j) plane by ``speed ||x||^2``
    (``expm(theta A)`` with ``A[i, j] = -1``, ``A[j, i] = 1``). Norm-preserving, hence inverted by
    ``spiral(., i, j, -speed)``."""
    theta = speed * np.einsum("ni,ni->n", x, x)
    c, s = np.cos(theta), np.sin(theta)
    out = x.copy()
    out[:, i] = c * x[:, i] - s * x[:, j]
    out[:, j] = s * x[:, i] + c * x[:, j]
    return out


def swissroll2d(u: Array) -> Array:
    """(n, 1) values in [0, 1] -> (n, 2) Swiss roll, as bmi's ``swissroll2d``."""
    t = 1.5 * np.pi * (1 + 2 * u[:, 0])
    return np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 21.0


def _replace(task: Task, **kw) -> Task:
    d = {f: getattr(task, f) for f in task.__dataclass_fields__}
    d.update(kw)
    return Task(**d)


def transform_task(
    task: Task,
    prefix: str,
    title_prefix: str,
    fx: Callable[[Array], Array],
    fy: Callable[[Array], Array] | None,
    *,
    monotone: bool,
    name: str | None = None,
    title: str | None = None,
    add_dim_x: int = 0,
) -> Task:
    """``(fx(X), fy(Y))`` for the diffeomorphism / embedding ``fx x fy``; MI is kept (bmi's
    TransformedSampler). ``monotone``: both maps are coordinate-wise strictly increasing, so the
    task stays in the base's rank class and keeps its Gaussian copula (if any)."""
    fy = fy if fy is not None else (lambda y: y)
    inner = task._sampler

    def sample(n, rng):
        x, y = inner(n, rng)
        return fx(x), fy(y)

    new_name = name or f"{prefix}-{task.name}"
    return Task(
        name=new_name,
        title=title or f"{title_prefix} @ {task.title}",
        dx=task.dx + add_dim_x,
        dy=task.dy,
        mi=task.mi,
        base=task.base if monotone else new_name,
        family=task.family,
        transforms=task.transforms + (prefix,),
        canonical_correlations=task.canonical_correlations if monotone else None,
        params=dict(task.params),
        _sampler=sample,
    )


def normal_cdfise(t: Task) -> Task:
    return transform_task(t, "normal_cdf", "Normal CDF", normal_cdf, normal_cdf, monotone=True)


def halfcubify(t: Task) -> Task:
    return transform_task(t, "half_cube", "Half-cube", half_cube, half_cube, monotone=True)


def wigglify(t: Task) -> Task:
    return transform_task(t, "wiggly", "Wiggly", wiggly_x, wiggly_y, monotone=True)


def asinhify(t: Task) -> Task:
    return transform_task(t, "asinh", "Asinh", np.arcsinh, np.arcsinh, monotone=True)


def spiralise(t: Task, speed: float = 1.0) -> Task:
    if t.dx < 2 or t.dy < 3:
        raise ValueError("spiral needs dx >= 2 and dy >= 3")
    sx, sy = speed / t.dx, speed / t.dy
    return transform_task(
        t,
        "spiral",
        "Spiral",
        lambda x: spiral(x, 0, 1, sx),
        lambda y: spiral(y, 1, 2, sy),
        monotone=False,
    )


def task_bimodal(rho: float = GAUSSIAN_CORRELATION) -> Task:
    uniform = normal_cdfise(task_bivariate_normal(rho))
    t = transform_task(
        uniform,
        "bimodal",
        "",
        lambda u: bimodal_icdf_x(u),
        lambda u: bimodal_icdf_y(u),
        monotone=True,
        name=f"1v1-bimodal-{rho}",
        title="Bimodal 1 × 1",
    )
    return t


def swissrollify(t: Task, title: str) -> Task:
    assert t.dx == 1
    return transform_task(
        t, "swissroll_x", "", swissroll2d, None, monotone=False, title=title, add_dim_x=1
    )


# ----------------------------------------------------------------------------------------------
# The task list (bmi.benchmark.task_list.BENCHMARK_TASKS_LIST, in its order)


def _build() -> tuple[dict[str, Task], dict[str, str]]:
    binormal = task_bivariate_normal(GAUSSIAN_CORRELATION)
    uniform = normal_cdfise(binormal)
    bistudent = task_student_identity(1, 1, 1)

    one_dim = [
        binormal,
        uniform,
        task_additive_noise(0.10),
        task_additive_noise(0.75),
        task_bimodal(GAUSSIAN_CORRELATION),
        wigglify(binormal),
        halfcubify(binormal),
        bistudent,
        asinhify(bistudent),
    ]
    embeddings = [swissrollify(uniform, "Swiss roll 2 × 1")]
    multinormal_dims = [
        ("dense", 2), ("dense", 3), ("dense", 5), ("dense", 25), ("dense", 50),
        ("2pair", 2), ("2pair", 3), ("2pair", 5), ("2pair", 25),
    ]  # fmt: skip
    student_specs = [(2, 1), (2, 2), (3, 2), (3, 3), (5, 2), (5, 3)]  # (dim, df)

    skipped: dict[str, str] = {}
    multinormal = []
    for kind, d in multinormal_dims:
        if d > MAX_DIM:
            nm = f"multinormal-{'dense' if kind == 'dense' else 'sparse'}-{d}-{d}" + (
                "-0.5" if kind == "dense" else "-2-2.0"
            )
            skipped[nm] = f"dx = dy = {d} > {MAX_DIM}"
            continue
        multinormal.append(task_multinormal_dense(d, d) if kind == "dense" else task_multinormal_2pair(d, d))
    student = [task_student_identity(d, d, df) for d, df in student_specs]

    p3, p5, p25 = (task_multinormal_2pair(d, d) for d in (3, 5, 25))
    transformed = [
        normal_cdfise(p3), normal_cdfise(p5), normal_cdfise(p25),
        halfcubify(p3), halfcubify(p5), halfcubify(p25),
        spiralise(p3), spiralise(p5), spiralise(p25),
        spiralise(normal_cdfise(p3)), spiralise(normal_cdfise(p5)), spiralise(normal_cdfise(p25)),
        asinhify(task_student_identity(2, 2, 1)),
        asinhify(task_student_identity(3, 3, 2)),
        asinhify(task_student_identity(5, 5, 2)),
    ]  # fmt: skip

    tasks: dict[str, Task] = {}
    for t in one_dim + embeddings + multinormal + student + transformed:
        assert t.name not in tasks, t.name
        if t.dx > MAX_DIM or t.dy > MAX_DIM:  # pragma: no cover - none after the filter above
            skipped[t.name] = f"dx={t.dx}, dy={t.dy} > {MAX_DIM}"
            continue
        tasks[t.name] = t
    return tasks, skipped


TASKS, SKIPPED = _build()
"""``TASKS``: name -> Task (39 tasks). ``SKIPPED``: bmi task id -> why it is left out."""


# ----------------------------------------------------------------------------------------------
# Self-check


def normal_scores(a: Array) -> Array:
    """Column-wise van der Waerden scores ``Phi^-1(rank / (n + 1))`` (ties: average rank)."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    return ndtri(rankdata(a, axis=0) / (a.shape[0] + 1))


def cca_se_and_bias(rho: Iterable[float], n: int, dx: int, dy: int) -> tuple[float, float]:
    """Asymptotic standard error and leading bias of the plug-in Gaussian (CCA) MI.

    Delta method: a sample canonical correlation has variance ``(1 - rho^2)^2 / n`` and
    ``d/drho [-1/2 log(1 - rho^2)] = rho / (1 - rho^2)``, so the estimate has variance
    ``sum_i rho_i^2 / n``. Bias: under independence ``2 n I_hat ~ chi^2_{dx dy}``, so
    ``E I_hat ~= I + dx dy / (2 n)`` to leading order."""
    rho = np.asarray(list(rho), dtype=np.float64)
    return float(np.sqrt(np.sum(rho**2) / n)), dx * dy / (2.0 * n)


def _student_pmi(x: Array, y: Array, df: float) -> Array:
    """Pointwise MI of the identity-dispersion t, with scipy's multivariate_t densities."""
    from scipy.stats import multivariate_t

    dx, dy = x.shape[1], y.shape[1]
    lj = multivariate_t(np.zeros(dx + dy), np.eye(dx + dy), df=df).logpdf(np.hstack([x, y]))
    lx = multivariate_t(np.zeros(dx), np.eye(dx), df=df).logpdf(x)
    ly = multivariate_t(np.zeros(dy), np.eye(dy), df=df).logpdf(y)
    return np.atleast_1d(lj - lx - ly)


def _additive_pmi(x: Array, y: Array, eps: float) -> Array:
    """log p(y | x) - log p(y): p(y | x) = 1/(2 eps), p(y) = |[y-eps, y+eps] cap [0, 1]| / (2 eps)."""
    y = y[:, 0]
    overlap = np.minimum(y + eps, 1.0) - np.maximum(y - eps, 0.0)
    return -np.log(overlap)


def _self_check(n: int = 20_000, n_ksg: int = 5_000, seed: int = 0) -> int:
    """Checks printed per task (z = (estimate - bias - truth) / se where an se is known):

    * Gaussian copula (``canonical_correlations`` set): CCA MI of the column-wise normal scores
      (rank-invariant, so it estimates the base Gaussian's MI), se and bias from
      ``cca_se_and_bias``;
    * Student-t: Monte Carlo mean of the pointwise MI from scipy's multivariate_t log densities,
      evaluated on the base draw (same seed; for asinh tasks the drawn samples are verified to be
      the asinh of it);
    * additive noise: Monte Carlo mean of the exact pointwise MI (trapezoid density of Y);
    * spiral and Swiss roll: the exact inverse (rotation back by the same angle; ``t = 21 |v|``)
      recovers the draw of the inner task (same seed) to 1e-9, and the CCA of its normal scores
      is checked as above;
    * 1v1 and Swiss roll: KSG (k = 5, ``pyromi.baselines.ksg_mi``) on the first ``n_ksg`` rows
      (informational: no se; the difference from the truth is printed as ``d=``);
    * closed forms: dense canonical correlation ``d / (d + 1)``, 2-pair ``rho = 4/5``, the
      Student entropy formula against scipy's ``multivariate_t.entropy``, the numpy spiral against
      ``scipy.linalg.expm``, and monotonicity of every coordinate-wise transform on a grid.
    """
    import time

    from scipy.linalg import expm
    from scipy.stats import multivariate_t

    from pyromi.baselines import cca_mi, ksg_mi

    t0 = time.time()
    failures: list[str] = []

    def fail(msg):
        failures.append(msg)
        print("FAIL:", msg)

    # ---- closed-form cross-checks
    for d in (2, 3, 5, 25):
        t = TASKS[f"multinormal-dense-{d}-{d}-0.5"]
        r = d / (d + 1)
        if not (len(t.canonical_correlations) == 1 and abs(t.canonical_correlations[0] - r) < 1e-10):
            fail(f"dense {d}: canonical correlations {t.canonical_correlations} != {r}")
        if abs(t.mi + 0.5 * math.log1p(-r * r)) > 1e-10:
            fail(f"dense {d}: mi {t.mi} != closed form")
    for d in (2, 3, 5, 25):
        t = TASKS[f"multinormal-sparse-{d}-{d}-2-2.0"]
        if not np.allclose(t.canonical_correlations, [0.8, 0.8], atol=1e-12) or abs(t.mi + math.log(0.36)) > 1e-10:
            fail(f"2-pair {d}: {t.canonical_correlations}, {t.mi}")
    for k in (1, 2, 4, 6, 10):
        for df in (1, 2, 3):
            ref = float(multivariate_t(np.zeros(k), np.eye(k), df=df).entropy())
            if abs(_student_entropy(k, df) - ref) > 1e-8:
                fail(f"student entropy k={k} df={df}: {_student_entropy(k, df)} vs scipy {ref}")
    rng = np.random.default_rng(seed)
    for d, (i, j) in ((3, (0, 1)), (5, (1, 2)), (25, (1, 2))):
        v = rng.standard_normal((4, d))
        a = np.zeros((d, d))
        a[i, j], a[j, i] = -1.0, 1.0
        ref = np.stack([expm(a * (r @ r) / d) @ r for r in v])
        if not np.allclose(spiral(v, i, j, 1.0 / d), ref, atol=1e-12):
            fail(f"spiral d={d} disagrees with expm")
    # Grids the float64 maps resolve: Phi stops resolving steps of 1e-4 above x ~ 7 (it rounds
    # to 1 above 8.3), and bmi's bisection clamps the bimodal x inverse CDF at 10 for
    # u > F_x(10) = 1 - 2e-7.
    grid = np.linspace(-12, 12, 200_001)[:, None]
    zgrid = np.linspace(-7, 7, 200_001)[:, None]
    ugrid = np.linspace(1e-7, 1 - 1e-6, 200_001)[:, None]
    for nm, f, g in (
        ("normal_cdf", normal_cdf, zgrid),
        ("half_cube", half_cube, grid),
        ("wiggly_x", wiggly_x, grid),
        ("wiggly_y", wiggly_y, grid),
        ("asinh", np.arcsinh, grid),
        ("bimodal_x", bimodal_icdf_x, ugrid),
        ("bimodal_y", bimodal_icdf_y, ugrid),
    ):
        if not np.all(np.diff(f(g)[:, 0]) > 0):
            fail(f"{nm} is not strictly increasing on the grid")

    # ---- per-task table
    hdr = f"{'task':52s} {'dx':>3s} {'dy':>3s} {'truth':>8s} {'check':>15s} {'estimate':>9s} {'se':>7s} {'z':>6s}  base"
    print(hdr)
    print("-" * len(hdr))
    z_max = 5.0
    for idx, t in enumerate(TASKS.values()):
        s = seed + 1000 * idx
        x, y = t.sample(n, np.random.default_rng(s))
        rows: list[tuple[str, float, float | None, float | None]] = []
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            fail(f"{t.name}: non-finite samples")
            continue
        base = TASKS[t.base] if t.base in TASKS else None
        if base is not None and base is not t:
            bx, by = base.sample(n, np.random.default_rng(s))
            same = all(
                np.array_equal(np.argsort(a[:, c], kind="stable"), np.argsort(b[:, c], kind="stable"))
                for a, b in ((x, bx), (y, by))
                for c in range(a.shape[1])
            )
            if not same:
                fail(f"{t.name}: ranks differ from its base {t.base}")
        else:
            bx, by = x, y
        if t.canonical_correlations is not None:
            est = cca_mi(normal_scores(x), normal_scores(y))
            se, bias = cca_se_and_bias(t.canonical_correlations, n, t.dx, t.dy)
            rows.append(("gauss-copula", est, se, bias))
        if t.family == "student":
            pmi = _student_pmi(bx, by, t.params["df"])
            rows.append(("MC pmi (t)", float(pmi.mean()), float(pmi.std(ddof=1) / math.sqrt(n)), 0.0))
            if "asinh" in t.transforms and not (
                np.allclose(np.arcsinh(bx), x, rtol=0, atol=1e-12)
                and np.allclose(np.arcsinh(by), y, rtol=0, atol=1e-12)
            ):
                fail(f"{t.name}: samples are not asinh of the base draw")
        if t.family == "additive":
            pmi = _additive_pmi(x, y, t.params["epsilon"])
            rows.append(("MC pmi (exact)", float(pmi.mean()), float(pmi.std(ddof=1) / math.sqrt(n)), 0.0))
        if "spiral" in t.transforms:
            inner = t.name[len("spiral-") :]
            ix = TASKS[inner]  # the 2-pair task or its normal-CDF version, both listed
            gx, gy = ix.sample(n, np.random.default_rng(s))
            rx, ry = spiral(x, 0, 1, -1.0 / t.dx), spiral(y, 1, 2, -1.0 / t.dy)
            err = max(np.abs(rx - gx).max(), np.abs(ry - gy).max())
            if err > 1e-9:
                fail(f"{t.name}: inverse spiral error {err:.2g}")
            rho = ix.canonical_correlations
            est = cca_mi(normal_scores(rx), normal_scores(ry))
            se, bias = cca_se_and_bias(rho, n, t.dx, t.dy)
            rows.append((f"inv+copula {err:.0e}", est, se, bias))
        if "swissroll_x" in t.transforms:
            inner = TASKS[t.name[len("swissroll_x-") :]]  # the uniform (normal-CDF) 1v1 task
            gx, gy = inner.sample(n, np.random.default_rng(s))
            u = (21.0 * np.hypot(x[:, :1], x[:, 1:]) / (1.5 * np.pi) - 1.0) / 2.0  # t = 21 |v|
            err = max(np.abs(u - gx).max(), np.abs(y - gy).max())
            if err > 1e-9:
                fail(f"{t.name}: inverse Swiss roll error {err:.2g}")
            est = cca_mi(normal_scores(u), normal_scores(y))
            se, bias = cca_se_and_bias(inner.canonical_correlations, n, 1, 1)
            rows.append((f"inv+copula {err:.0e}", est, se, bias))
        if t.dx + t.dy <= 3:
            est = ksg_mi(x[:n_ksg], y[:n_ksg], k=5, seed=0)
            rows.append(("KSG n=%d" % n_ksg, est, None, None))
        for i, (method, est, se, bias) in enumerate(rows):
            z = None if se is None else (est - bias - t.mi) / se
            zs = f"{z:6.2f}" if z is not None else f"{'d=' + format(est - t.mi, '+.3f'):>6s}"
            lead = f"{t.name:52s} {t.dx:3d} {t.dy:3d} {t.mi:8.4f}" if i == 0 else " " * 69
            print(
                f"{lead} {method:>15s} {est:9.4f} {'' if se is None else format(se, '7.4f'):>7s} {zs}"
                + (f"  {t.base}" if i == 0 else "")
            )
            if z is not None and abs(z) > z_max:
                fail(f"{t.name}: {method} z = {z:.2f}")
        if not rows:
            print(f"{t.name:52s} {t.dx:3d} {t.dy:3d} {t.mi:8.4f} {'(none)':>15s}")

    uniq = unique_by_rank(TASKS)
    print(f"\n{len(TASKS)} tasks, {len(uniq)} rank-distinct bases; skipped: {SKIPPED}")
    print(f"{'OK' if not failures else f'{len(failures)} FAILURES'} in {time.time() - t0:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(_self_check())
