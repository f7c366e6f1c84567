"""Sample-based MI baselines on the full X and Y blocks (nats): KSG, CCA and a trained InfoNCE critic.

Each takes ``x`` ``(n, dx)`` and ``y`` ``(n, dy)`` (numpy arrays or torch tensors, float) with
the same ``n``, and estimates ``I(X; Y)`` between the *whole* blocks (not column 0 vs column 1).
Inputs are checked by :func:`check_xy` (shapes, finiteness, constant columns, sample size).

* :func:`ksg_mi`: Kraskov-Stoegbauer-Grassberger estimator 1 with the max-norm,
  ``I = psi(k) + psi(n) - < psi(n_x + 1) + psi(n_y + 1) >``, where ``eps_i`` is the distance
  from point i to its k-th neighbour in the joint space and ``n_x`` (``n_y``) counts the points
  strictly closer than ``eps_i`` in the X (Y) space.
* :func:`cca_mi`: the Gaussian MI of the canonical correlations, ``-1/2 sum_i log(1 - rho_i^2)``
  (exact for jointly Gaussian data, blind to non-linear dependence).
* :func:`infonce_mi`: InfoNCE lower bound of a concatenation-MLP critic trained on the sample
  (at most ``log n``); for the cost comparison with MIST.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .errors import PyromiError

__all__ = ["check_xy", "ksg_mi", "cca_mi", "canonical_pair_mi", "infonce_mi"]


def _as_array(a, name: str) -> np.ndarray:
    try:
        import torch

        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    arr = np.asarray(a)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise PyromiError(f"{name} must be a real numeric array (numpy or torch), got dtype {arr.dtype}")
    return arr.astype(np.float64)


def check_xy(x, y, *, min_n: int = 2, check_constant: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert a paired sample; returns float64 arrays ``(n, dx)``, ``(n, dy)``.

    Raises :class:`~pyromi.errors.PyromiError` (a ``ValueError``) naming the argument and the fix for:
    a dimension other than 2, an empty block, mismatched ``n``, NaN or infinite entries, fewer than
    ``min_n`` rows, a constant column.
    """
    x, y = _as_array(x, "x"), _as_array(y, "y")
    for name, a in (("x", x), ("y", y)):
        if a.ndim != 2:
            raise PyromiError(
                f"{name} must be 2-D of shape (n, d{name}) with one row per sample, got shape "
                f"{a.shape}; for a single variable pass {name}.reshape(-1, 1)"
            )
        if a.shape[1] == 0:
            raise PyromiError(f"{name} has no columns (shape {a.shape}); pass at least one variable")
    if x.shape[0] != y.shape[0]:
        raise PyromiError(
            f"x and y must have the same number of rows (paired samples), got x: {x.shape[0]} and "
            f"y: {y.shape[0]}; row i of x must pair with row i of y"
        )
    for name, a in (("x", x), ("y", y)):
        bad = ~np.isfinite(a)
        if bad.any():
            rows = np.flatnonzero(bad.any(1))
            raise PyromiError(
                f"{name} has {bad.sum()} NaN or infinite entries (first in row {rows[0]}, {len(rows)} "
                f"rows affected); drop those rows from both x and y (or impute them) first"
            )
    n = x.shape[0]
    if n < min_n:
        raise PyromiError(f"x and y have n={n} rows; this estimator needs n >= {min_n}: pass more samples")
    if check_constant:
        for name, a in (("x", x), ("y", y)):
            const = np.flatnonzero(np.ptp(a, axis=0) == 0)
            if len(const):
                raise PyromiError(
                    f"column(s) {const.tolist()} of {name} are constant; a constant carries no "
                    f"information, drop those columns"
                )
    return x, y


def _standardise(a: np.ndarray) -> np.ndarray:
    return (a - a.mean(0)) / a.std(0)


def ksg_mi(x, y, k: int = 5, *, seed: int = 0, jitter: float = 1e-10) -> float:
    """KSG estimator 1 (max-norm) of ``I(X; Y)`` between the full blocks, in nats.

    Columns are standardised; ties and duplicate rows are broken by adding ``jitter`` times
    N(0, 1) noise (seeded) to the standardised values, since duplicates make the neighbour
    distance 0. Counting uses radii just below ``eps_i`` (strict inequality). The estimate can be
    slightly negative for independent data. Cost O(n log n) per block with ``scipy.spatial.cKDTree``.
    """
    from scipy.spatial import cKDTree
    from scipy.special import digamma

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise PyromiError(f"k must be a positive int (number of neighbours), got {k!r}")
    x, y = check_xy(x, y, min_n=k + 2)
    rng = np.random.default_rng(seed)
    x = _standardise(x) + jitter * rng.standard_normal(x.shape)
    y = _standardise(y) + jitter * rng.standard_normal(y.shape)
    n = x.shape[0]
    xy = np.concatenate([x, y], 1)
    dist, _ = cKDTree(xy).query(xy, k=k + 1, p=np.inf)  # column 0 is the point itself
    r = np.nextafter(dist[:, -1], 0.0)
    nx = cKDTree(x).query_ball_point(x, r, p=np.inf, return_length=True) - 1
    ny = cKDTree(y).query_ball_point(y, r, p=np.inf, return_length=True) - 1
    return float(digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(ny + 1)))


def cca_mi(x, y, *, shrinkage: float = 0.0) -> float:
    """Gaussian MI from the sample canonical correlations: ``-1/2 sum_i log(1 - rho_i^2)`` (nats).

    ``shrinkage`` s replaces the sample correlation matrix R by ``(1 - s) R + s I``; with
    ``s = 0`` (default) it needs ``n > dx + dy`` (else the canonical correlations are all 1).
    """
    if not 0.0 <= shrinkage < 1.0:
        raise PyromiError(f"shrinkage must be in [0, 1), got {shrinkage}")
    x, y = check_xy(x, y, min_n=3)
    n, dx = x.shape
    dy = y.shape[1]
    if shrinkage == 0.0 and n <= dx + dy:
        raise PyromiError(
            f"cca_mi needs n > dx + dy = {dx + dy} rows without shrinkage (got n={n}): the canonical "
            f"correlations are all 1; pass more samples or shrinkage= > 0 (e.g. 1e-3)"
        )
    z = _standardise(np.concatenate([x, y], 1))
    r = (z.T @ z) / n
    r = (1 - shrinkage) * r + shrinkage * np.eye(dx + dy)
    return float(canonical_pair_mi(r, dx, rho_max=1.0 - 1e-12).sum())


def canonical_pair_mi(r: np.ndarray, dx: int, *, rho_max: float) -> np.ndarray:
    """Per canonical pair ``-1/2 log(1 - rho_i^2)`` (nats, descending in rho) from a joint
    correlation matrix ``r`` whose first ``dx`` rows/columns are X: the ``rho_i`` are the singular
    values of ``Lx^-1 Rxy Ly^-T`` (``L`` Cholesky factors of the blocks), clipped to ``rho_max``."""
    lx = np.linalg.cholesky(r[:dx, :dx])
    ly = np.linalg.cholesky(r[dx:, dx:])
    m = np.linalg.solve(lx, np.linalg.solve(ly, r[dx:, :dx]).T)
    rho = np.clip(np.linalg.svd(m, compute_uv=False), 0.0, rho_max)
    return -0.5 * np.log1p(-rho * rho)


def infonce_mi(
    x,
    y,
    *,
    steps: int = 500,
    batch_size: int = 128,
    hidden: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    return_seconds: bool = False,
):
    """InfoNCE estimate ``mean_i [f(x_i, y_i) - log mean_j exp f(x_i, y_j)]`` (nats, <= log n).

    The critic ``f(x, y) = MLP([x, y])`` (two hidden ELU layers of ``hidden`` units) is trained by
    Adam for ``steps`` steps on random minibatches of ``batch_size`` pairs of the standardised
    sample (all ``batch_size^2`` pairings scored per step), then the bound is evaluated on the whole
    sample (in blocks of at most 1000 rows). ``return_seconds=True`` returns
    ``(estimate, training seconds)``.
    """
    import torch
    from torch import nn

    x, y = check_xy(x, y, min_n=4)
    n = x.shape[0]
    g = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(_standardise(x), dtype=torch.float32)
    yt = torch.as_tensor(_standardise(y), dtype=torch.float32)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Linear(x.shape[1] + y.shape[1], hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, 1)
        )
    opt = torch.optim.Adam(net.parameters(), lr=lr)

    def scores(xb, yb):  # (B, B): f(x_i, y_j)
        b = xb.shape[0]
        pair = torch.cat([xb[:, None].expand(b, yb.shape[0], -1), yb[None].expand(b, -1, -1)], -1)
        return net(pair).squeeze(-1)

    def bound(s):
        return (s.diagonal() - torch.logsumexp(s, 1) + math.log(s.shape[1])).mean()

    b = min(batch_size, n)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randperm(n, generator=g)[:b]
        loss = -bound(scores(xt[idx], yt[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        vals = []
        for i in range(0, n, 1000):
            j = slice(i, min(i + 1000, n))
            vals.append(bound(scores(xt[j], yt[j])) * (j.stop - j.start))
        est = float(sum(vals) / n)
    return (est, seconds) if return_seconds else est
