"""Range check: does a sample show more dependence than the MIST weights were trained on?

MIST reads ranks, was trained on a meta-prior whose MI is bounded (per shape ``(dx, dy)``, 99% of
the training sets lie below ``Pretrained.trained_mi_q99_for(dx, dy)``), and saw only monotone
(copula-like) dependence. Past that range its median is pulled back toward the bulk of the training
MI and its interval, calibrated inside the range, can exclude the truth by any amount: on
``x == y`` it returns about 2 nats. The network cannot flag this itself, so two classical
statistics of the same sample are compared with what MIST can see:

* **Gaussian-copula MI** (:func:`copula_cca`): the canonical-correlation MI
  ``-1/2 sum_i log(1 - rho_i^2)`` of the per-column normal scores (the representation MIST reads),
  over the whole sample. Exact for Gaussian copulas and, for ``dx = dy = 1``, a lower bound on the
  MI of any continuous pair (normal scores have Gaussian marginals, and the Gaussian has the
  largest entropy for its covariance). Near-deterministic monotone relations (``y = x``,
  ``y = x ** 3``) give canonical correlations of 1. Its 99% lower value subtracts the exact null
  bias and uses the null (Wilks' Lambda) plus delta-method variances.
* **KSG on normal scores** (:func:`ksg_scores`; Kraskov et al. estimator 1, ``k = 5``, max-norm,
  ties broken at random): sees non-monotone dependence (``y = sin 3x``, ``y = x ** 2``) that CCA and
  MIST miss. Only where it is cheap and not hopelessly biased: ``dx + dy <= KSG_MAX_DIMS``, on at most
  ``KSG_MAX_ROWS`` random rows. Its lower value uses the standard error of its per-row terms.

The check **fires** when the larger lower value exceeds either the training range of the shape
(``trained_mi_q99_for(dx, dy)``) or MIST's own 95% quantile (the data then contradict MIST's
interval). Lower values sit ``Z`` = 2.326 standard errors (one-sided 99%) below the estimates, so
on in-range data a chance exceedance is rare. See :func:`check`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

#: one-sided 99% normal quantile used for the statistics' lower values
Z = 2.3263478740408408
#: KSG is run only when ``dx + dy`` is at most this (its cost and bias grow fast with dimension)
KSG_MAX_DIMS = 4
#: and on at most this many rows (drawn at random)
KSG_MAX_ROWS = 1000
#: neighbours in KSG
KSG_K = 5
#: correlation shrinkage in the range check's CCA: keeps collinear columns finite (caps a pair's
#: MI at about 10 nats) without changing any ordinary value
SHRINK = 1e-9


def normal_scores(a: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Per-column normal scores ``Phi^-1((r - 1/2) / n)``; ties get average ranks, or, given
    ``rng``, ranks in a random order (independently per column)."""
    from .model import normalise_columns

    if rng is None:
        return normalise_columns(a, "rank")
    n, d = a.shape
    out = np.empty((n, d))
    ranks = np.arange(1.0, n + 1)
    for j in range(d):
        order = np.lexsort((rng.random(n), a[:, j]))
        r = np.empty(n)
        r[order] = ranks
        out[:, j] = special.ndtri((r - 0.5) / n)
    return out


def copula_cca(u: np.ndarray, v: np.ndarray) -> dict | None:
    """Gaussian-copula MI of normal scores ``u`` ``(n, dx)``, ``v`` ``(n, dy)`` with its 99% lower
    value; ``None`` when ``n < dx + dy + 2`` (canonical correlations are then not identifiable).

    ``value = -1/2 sum_i log(1 - rho_i^2)``; ``lower = value - b0 - Z sqrt(v0 / 4 + sum_i rho_i^2 / n)``
    with ``b0 = 1/2 sum_{i <= dx} [psi((n - i) / 2) - psi((n - dy - i) / 2)]`` and
    ``v0 = sum_{i <= dx} [psi'((n - dy - i) / 2) - psi'((n - i) / 2)]`` the exact null mean and
    variance of ``-log Lambda`` (Wilks) for Gaussian data, and ``rho_i^2 / n`` the delta-method
    variance of a pair's MI."""
    from ..baselines import canonical_pair_mi

    n, dx = u.shape
    dy = v.shape[1]
    if n < dx + dy + 2:
        return None
    z = np.concatenate([u, v], 1)
    z = z - z.mean(0)
    sd = np.sqrt((z * z).mean(0))
    z = z / np.where(sd > 0, sd, 1.0)
    r = (z.T @ z) / n
    r = (1 - SHRINK) * r + SHRINK * np.eye(dx + dy)
    pair = canonical_pair_mi(r, dx, rho_max=1.0 - 1e-15)
    value = float(pair.sum())
    rho2 = -np.expm1(-2.0 * pair)
    i = np.arange(1, dx + 1)
    b0 = 0.5 * float(np.sum(special.digamma((n - i) / 2) - special.digamma((n - dy - i) / 2)))
    v0 = float(np.sum(special.polygamma(1, (n - dy - i) / 2) - special.polygamma(1, (n - i) / 2)))
    se = math.sqrt(v0 / 4 + float(rho2.sum()) / n)
    return {"value": value, "lower": value - b0 - Z * se, "null_bias": b0, "se": se}


def ksg_scores(u: np.ndarray, v: np.ndarray, k: int = KSG_K) -> dict:
    """KSG estimator 1 (max-norm) on normal scores without ties, with the standard error of its
    per-row terms ``psi(k) + psi(n) - psi(n_x + 1) - psi(n_y + 1)`` and the 99% lower value."""
    from scipy.spatial import cKDTree

    n = u.shape[0]
    uv = np.concatenate([u, v], 1)
    dist, _ = cKDTree(uv).query(uv, k=k + 1, p=np.inf)
    r = np.nextafter(dist[:, -1], 0.0)
    nx = cKDTree(u).query_ball_point(u, r, p=np.inf, return_length=True) - 1
    ny = cKDTree(v).query_ball_point(v, r, p=np.inf, return_length=True) - 1
    terms = special.digamma(k) + special.digamma(n) - special.digamma(nx + 1) - special.digamma(ny + 1)
    value = float(terms.mean())
    se = float(terms.std(ddof=1) / math.sqrt(n))
    return {"value": value, "lower": value - Z * se, "se": se, "rows": n}


def check(x: np.ndarray, y: np.ndarray, *, shape_q99: float, mist_q95: float, seed: int) -> dict:
    """Run the range check on a validated sample; returns the record stored in
    ``est.diagnostics["range_check"]``: ``fired`` (bool), ``reasons`` (sentences), the statistics
    (``cca``, ``ksg``: value, 99% lower value, standard error; ``None`` where not run) and the two
    thresholds ``shape_mi_q99`` and ``mist_q95``."""
    rng = np.random.default_rng([seed, 0x5A])
    n, dx = x.shape
    dy = y.shape[1]
    cca = copula_cca(normal_scores(x), normal_scores(y))
    ksg = None
    if dx + dy <= KSG_MAX_DIMS and n >= 2 * KSG_K:
        rows = rng.permutation(n)[:KSG_MAX_ROWS] if n > KSG_MAX_ROWS else np.arange(n)
        ksg = ksg_scores(normal_scores(x[rows], rng), normal_scores(y[rows], rng))
    reasons = []
    for name, st in (("Gaussian-copula (CCA) MI", cca), ("KSG MI of the normal scores", ksg)):
        if st is None:
            continue
        if st["lower"] > shape_q99:
            reasons.append(
                f"the {name} of the sample is at least {st['lower']:.2f} nats (99% lower value; "
                f"estimate {st['value']:.2f}), above {shape_q99:.2f} nats, the 99th percentile of "
                f"the MI the weights were trained on for (dx, dy) = ({dx}, {dy})"
            )
        elif st["lower"] > mist_q95:
            reasons.append(
                f"the {name} of the sample is at least {st['lower']:.2f} nats (99% lower value; "
                f"estimate {st['value']:.2f}), above MIST's own 95% quantile {mist_q95:.2f}: the "
                f"dependence is of a kind MIST was not trained on (e.g. non-monotone)"
            )
    return {
        "fired": bool(reasons),
        "reasons": reasons,
        "cca": cca,
        "ksg": ksg,
        "shape_mi_q99": float(shape_q99),
        "mist_q95": float(mist_q95),
    }
