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

from ._state import warn as _warn
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
            const = np.flatnonzero(a.max(0) == a.min(0))  # not np.ptp: it overflows for +-1e308
            if len(const):
                raise PyromiError(
                    f"column(s) {const.tolist()} of {name} are constant; a constant carries no "
                    f"information, drop those columns"
                )
    return x, y


def _standardise(a: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit standard deviation, also for values near the float64
    limit (``a.std()`` of values ~1e200 overflows to inf and would zero the column): centre on the
    median (exact for nearby values), scale by the largest deviation, then standardise."""
    with np.errstate(over="ignore", invalid="ignore"):
        c = a - np.median(a, 0)
        if not np.isfinite(c).all():  # a range wider than the float64 limit
            c = a / np.abs(a).max(0)
            c = c - np.median(c, 0)
    c = c / np.abs(c).max(0)
    return (c - c.mean(0)) / c.std(0)


_KSG_STREAM = 0x6B5347  # "kSG": the tie-breaking noise never reuses the stream of default_rng(seed)


def _check_seed(seed) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise PyromiError(f"seed must be a non-negative int (or None), got {seed!r}")


def _break_ties(x: np.ndarray, y: np.ndarray, seed, jitter: float) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Add seeded noise to the (standardised) columns that hold tied values; returns the new blocks
    and a warning text naming the ties (None without ties).

    The noise of a tied column has standard deviation ``min(jitter, 1e-3 g)`` (``g`` its smallest
    gap between distinct values; at least 1e-13, float64's resolution near 1), so it separates
    equal values without moving distinct ones relative to each other. It comes from a generator of its own (``seed`` mixed with a constant),
    never from numpy's global state, and never from the stream ``np.random.default_rng(seed)`` a
    caller may have drawn the data from: noise that repeats the data's own draws is correlated with
    the data and biases the estimate (up to 2x on a rounded Gaussian pair)."""
    n = x.shape[0]
    rng = np.random.default_rng([_KSG_STREAM, seed]) if seed is not None else np.random.default_rng()
    described, distinct_counts = [], []
    out = []
    for name, a in (("x", x), ("y", y)):
        a = a.copy()
        for j in range(a.shape[1]):
            u = np.unique(a[:, j])
            distinct_counts.append(u.size)
            if u.size < n:
                described.append(f"{name}[:, {j}] has {u.size} distinct values in {n}")
                gap = float(np.diff(u).min())
                a[:, j] += max(min(jitter, 1e-3 * gap), 1e-13) * rng.standard_normal(n)
        out.append(a)
    if not described:
        return x, y, None
    distinct_rows = np.unique(np.concatenate([x, y], 1), axis=0).shape[0]
    shown = "; ".join(described[:4]) + (f"; and {len(described) - 4} more tied columns" if len(described) > 4 else "")
    msg = (
        f"ksg_mi: tied values ({shown}; {n - distinct_rows} of {n} rows repeat another row). KSG "
        f"needs distinct points, so pyromi broke the ties with seeded noise of at most {jitter:g} "
        "standard deviations (below the gap between distinct values); the estimate then treats "
        "each tied value as an atom, i.e. it is the MI of the discrete or rounded values as given."
    )
    if distinct_rows < n and all(c == distinct_rows for c in distinct_counts):
        msg += (
            f" Every tie here is a whole repeated row ({distinct_rows} distinct rows): if the "
            "repeats are duplicated records of continuous data (resampling, oversampling, merged "
            "files) rather than atoms of a discrete distribution, drop them first "
            "(np.unique(np.c_[x, y], axis=0), or pyromi estimate --drop-duplicates): each repeat "
            "counts as an atom of probability, which inflates the estimate (towards "
            f"log {distinct_rows} = {math.log(distinct_rows):.2f} nats when rows repeat more than k times)."
        )
    return out[0], out[1], msg


def ksg_mi(x, y, k: int = 5, *, seed: int | None = 0, jitter: float = 1e-10) -> float:
    """KSG estimator 1 (max-norm) of ``I(X; Y)`` between the full blocks, in nats.

    Columns are standardised. Tied values (equal entries within a column, hence also repeated
    rows) put points at distance 0, which the neighbour counts cannot handle: each tied column gets
    seeded N(0, s^2) noise with ``s = min(jitter, 1e-3 * its smallest gap between distinct values)``
    (standardised units), and a ``UserWarning`` names the ties. The estimate is then the MI of the
    tied values as atoms (discrete or rounded variables); duplicated records of continuous data
    should be dropped first (the warning says so when every tie is a repeated row). ``seed`` (an
    int >= 0, or None for fresh noise) seeds a generator of its own. Counting uses radii just
    below ``eps_i`` (strict inequality). The estimate can be slightly negative for independent data.
    Cost O(n log n) per block with ``scipy.spatial.cKDTree``.
    """
    from scipy.spatial import cKDTree
    from scipy.special import digamma

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise PyromiError(f"k must be a positive int (number of neighbours), got {k!r}")
    _check_seed(seed)
    if isinstance(jitter, bool) or not (isinstance(jitter, (int, float, np.floating)) and 0 < jitter <= 1e-3):
        raise PyromiError(f"jitter must be a float in (0, 1e-3] (standard deviations), got {jitter!r}")
    x, y = check_xy(x, y, min_n=2)
    n = x.shape[0]
    if n < k + 2:
        raise PyromiError(
            f"ksg_mi with k={k} neighbours needs n >= k + 2 = {k + 2} rows, got n={n}: pass more "
            f"rows or a smaller k"
        )
    x, y, ties = _break_ties(_standardise(x), _standardise(y), seed, float(jitter))
    if ties is not None:
        _warn(ties, UserWarning)
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
    if isinstance(shrinkage, bool) or not isinstance(shrinkage, (int, float)) or not 0.0 <= shrinkage < 1.0:
        raise PyromiError(f"shrinkage must be a float in [0, 1), got {shrinkage!r}")
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
    for name, block in (("x", r[:dx, :dx]), ("y", r[dx:, dx:])):
        lam = np.linalg.eigvalsh(block)
        if lam[0] <= 1e-10 * lam[-1]:
            raise PyromiError(
                f"the columns of {name} are linearly dependent (their correlation matrix is singular, "
                f"smallest eigenvalue {lam[0]:.2g}): drop the redundant columns of {name}, or pass "
                f"shrinkage= > 0 (e.g. 1e-3)"
            )
    rho_max = 1.0 - 1e-12
    pairs = canonical_pair_mi(r, dx, rho_max=rho_max)
    cap = float(-0.5 * np.log1p(-np.float64(rho_max) ** 2))
    if pairs.max() >= cap * (1 - 1e-9):
        raise PyromiError(
            "a canonical correlation between x and y is 1 (to 1e-12): some combination of the y "
            "columns is an exact linear function of the x columns (the same column on both sides?), "
            "so the Gaussian MI is infinite; remove the duplicated information, or pass shrinkage= "
            "> 0 for a finite, regularised value"
        )
    return float(pairs.sum())


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

    for name, v, lo in (("steps", steps, 1), ("batch_size", batch_size, 2), ("hidden", hidden, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise PyromiError(f"{name} must be an int >= {lo}, got {v!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise PyromiError(f"lr must be a positive float, got {lr!r}")
    _check_seed(seed)
    if seed is None:
        raise PyromiError("infonce_mi needs an int seed >= 0 (it seeds the critic and the minibatches)")
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
    if not math.isfinite(est):
        raise PyromiError(
            f"infonce_mi: the critic's training diverged (estimate {est}); lower lr (got {lr}) or "
            f"standardise/clip extreme values"
        )
    return (est, seconds) if return_seconds else est
