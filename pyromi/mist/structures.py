"""Base structures of the second MIST meta-prior whose MI is not a classical closed form.

Each structure is a pair of functions used by :mod:`pyromi.mist.families`: ``draw_*(dx, dy, rng)``
returns ``(mi, params)`` and ``sample_*(params, n, rng)`` returns base draws ``(x, y)``.

* ``pairs`` (:func:`pairs_covariance`): ``k ~ U{1..min(dx, dy)}`` canonical pairs with per-pair MI
  ``m_i`` (total ``T`` log-uniform on ``[0.01, 25]`` nats, split by a Dirichlet, each pair capped at
  7 nats), then a random orthogonal mixing within X and within Y. ``I = sum_i m_i`` exactly
  (``rho_i^2 = 1 - exp(-2 m_i)``). Covers several nats in one or two dimensions and many weak
  dependencies spread over all coordinates, which the BMI-style structures do not.

* ``curve``: a shared scalar latent ``s ~ N(0, 1)``; ``X_j = F_j(s) + sigma_x e_j`` on ``r_x`` active
  coordinates (the rest independent N(0, 1)), ``Y`` likewise with ``G``; ``F_j, G_j`` random smooth
  **non-monotone** functions ``sum_m a_m sin(w_m s + phi_m) + c s`` (standardised). ``X`` and ``Y``
  are conditionally independent given ``s``, so every density is a one-dimensional integral over
  ``s``; ``I = E[log p(x, y) - log p(x) - log p(y)]`` is computed by Monte Carlo over joint draws
  (:data:`MC_DRAWS`) with each density by quadrature on a fine grid of ``s`` (:data:`GRID`
  nodes on ``[-5, 5]``). The noise is floored so that the posterior of ``s`` is at least
  :data:`MIN_POSTERIOR_NODES` grid spacings wide (quadrature error negligible); the Monte Carlo
  standard error is stored as ``params["mi_se"]``.

* ``mixture``: ``K ~ U{2..5}`` Gaussian components on ``(X, Y)`` with random means and covariances;
  ``I`` by Monte Carlo of the exact mixture log densities (``params["mi_se"]``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = [
    "MC_DRAWS",
    "GRID",
    "pairs_covariance",
    "draw_curve",
    "sample_curve",
    "curve_pointwise_mi",
    "draw_mixture",
    "sample_mixture",
    "mixture_pointwise_mi",
]

#: Monte Carlo draws for the MI of the ``curve`` and ``mixture`` structures
MC_DRAWS = 1000
#: quadrature nodes on ``[-5, 5]`` for the latent of ``curve``
GRID = 1500
#: the posterior standard deviation of ``s`` is kept above this many grid spacings
MIN_POSTERIOR_NODES = 2.5
_MAX_PAIR_MI = 7.0


def _orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def pairs_covariance(dx: int, dy: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Covariance of the ``pairs`` structure (see the module docstring) and its parameters; the MI
    of the Gaussian with this covariance is ``sum(params["pair_mi"])``."""
    m = min(dx, dy)
    k = int(rng.integers(1, m + 1))
    total = math.exp(rng.uniform(math.log(0.01), math.log(25.0)))
    mi = np.minimum(total * rng.dirichlet(np.full(k, 1.0)), _MAX_PAIR_MI)
    rho = np.sqrt(-np.expm1(-2.0 * mi))
    cov = np.eye(dx + dy)
    cov[np.arange(k), dx + np.arange(k)] = rho
    cov[dx + np.arange(k), np.arange(k)] = rho
    q = np.zeros((dx + dy, dx + dy))
    q[:dx, :dx] = _orthogonal(dx, rng)
    q[dx:, dx:] = _orthogonal(dy, rng)
    cov = q @ cov @ q.T
    return 0.5 * (cov + cov.T), {"k": k, "pair_mi": mi}


# ----------------------------------------------------------------------------- curve


def _random_functions(r: int, rng: np.random.Generator, nodes: np.ndarray, weights: np.ndarray) -> dict:
    """``r`` random smooth functions of s, standardised under N(0, 1) (mean 0, variance 1)."""
    harm = 3
    a = rng.standard_normal((r, harm))
    w = rng.uniform(0.5, 3.0, (r, harm)) * rng.choice([-1.0, 1.0], (r, harm))
    phi = rng.uniform(0.0, 2 * math.pi, (r, harm))
    c = rng.normal(0.0, 0.5, r)
    f = {"a": a, "w": w, "phi": phi, "c": c, "mu": np.zeros(r), "sd": np.ones(r)}
    vals = _eval(f, nodes)  # (N, r)
    mu = weights @ vals
    sd = np.sqrt(np.maximum(weights @ (vals - mu) ** 2, 1e-12))
    f["mu"], f["sd"] = mu, sd
    return f


def _eval(f: dict, s: np.ndarray) -> np.ndarray:
    """Values ``(len(s), r)``."""
    t = s[:, None, None] * f["w"][None] + f["phi"][None]
    v = (f["a"][None] * np.sin(t)).sum(-1) + s[:, None] * f["c"][None]
    return (v - f["mu"]) / f["sd"]


def _deriv(f: dict, s: np.ndarray) -> np.ndarray:
    t = s[:, None, None] * f["w"][None] + f["phi"][None]
    v = (f["a"][None] * f["w"][None] * np.cos(t)).sum(-1) + f["c"][None]
    return v / f["sd"]


def _grid() -> tuple[np.ndarray, np.ndarray]:
    nodes = np.linspace(-5.0, 5.0, GRID)
    w = np.exp(-0.5 * nodes**2)
    return nodes, w / w.sum()


def draw_curve(dx: int, dy: int, rng: np.random.Generator, mc_draws: int = MC_DRAWS) -> tuple[float, dict]:
    """Parameters of a ``curve`` task and its MI (Monte Carlo over ``mc_draws`` joint draws, each
    density by quadrature; a seeded generator derived from ``rng`` draws them)."""
    nodes, weights = _grid()
    spacing = nodes[1] - nodes[0]
    p: dict = {"nodes": nodes, "weights": weights}
    for which, d in (("x", dx), ("y", dy)):
        r = int(rng.integers(1, d + 1))
        f = _random_functions(r, rng, nodes, weights)
        sigma = math.exp(rng.uniform(math.log(0.05), math.log(2.0)))
        # Fisher information of s from this block: sum_j F_j'(s)^2 / sigma^2; floor sigma so the
        # posterior sd of s (>= 1 / sqrt(J)) spans at least MIN_POSTERIOR_NODES grid spacings
        grad = math.sqrt(float((_deriv(f, nodes) ** 2).sum(1).max()))
        sigma = max(sigma, grad * MIN_POSTERIOR_NODES * spacing)
        p[f"f_{which}"], p[f"sigma_{which}"], p[f"active_{which}"] = f, sigma, r
    return _monte_carlo_mi(p, dx, dy, rng, mc_draws, sample_curve, curve_pointwise_mi)


def _monte_carlo_mi(p: dict, dx: int, dy: int, rng: np.random.Generator, draws: int, sample, pointwise) -> tuple[float, dict]:
    """``(max(0, mean pointwise MI), p)`` over ``draws`` base draws from a generator seeded by
    ``rng``; its standard error is stored as ``p["mi_se"]``."""
    mc_rng = np.random.default_rng(rng.integers(0, 2**63, 2))
    xb, yb = sample(p, dx, dy, draws, mc_rng)
    pm = pointwise(p, xb, yb)
    p["mi_se"] = float(pm.std(ddof=1) / math.sqrt(len(pm)))
    return max(float(pm.mean()), 0.0), p


def sample_curve(p: dict, dx: int, dy: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` base draws of a ``curve`` task."""
    s = rng.standard_normal(n)
    out = []
    for which, d in (("x", dx), ("y", dy)):
        a = rng.standard_normal((n, d))
        r = p[f"active_{which}"]
        a[:, :r] = _eval(p[f"f_{which}"], s) + p[f"sigma_{which}"] * a[:, :r]
        out.append(a)
    return out[0], out[1]


def _cond_loglik(p: dict, a: np.ndarray, which: str) -> np.ndarray:
    """``log p(a_i | s_j)`` up to a constant, ``(n, GRID)``, on the active coordinates."""
    r = p[f"active_{which}"]
    a = a[:, :r]
    f = _eval(p[f"f_{which}"], p["nodes"])  # (N, r)
    sq = (a * a).sum(1)[:, None] - 2.0 * a @ f.T + (f * f).sum(1)[None, :]
    return -0.5 * sq / p[f"sigma_{which}"] ** 2


def curve_pointwise_mi(p: dict, xb: np.ndarray, yb: np.ndarray) -> np.ndarray:
    """``log p(x, y) - log p(x) - log p(y)`` at base draws (densities by quadrature over s)."""
    lw = np.log(p["weights"])[None, :]
    lx = _cond_loglik(p, xb, "x")
    ly = _cond_loglik(p, yb, "y")
    return _lse(lx + ly + lw) - _lse(lx + lw) - _lse(ly + lw)


def _lse(a: np.ndarray) -> np.ndarray:
    m = a.max(1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(1, keepdims=True)))[:, 0]


# ----------------------------------------------------------------------------- mixture


def draw_mixture(dx: int, dy: int, rng: np.random.Generator, mc_draws: int = MC_DRAWS) -> tuple[float, dict]:
    """Parameters of a ``mixture`` task and its MI (Monte Carlo of the exact log densities)."""
    d = dx + dy
    k = int(rng.integers(2, 6))
    spread = rng.uniform(0.5, 3.0)
    p: dict = {
        "pi": rng.dirichlet(np.full(k, 1.5)),
        "means": rng.standard_normal((k, d)) * spread,
        "chols": [],
    }
    for _ in range(k):
        a = rng.standard_normal((d, d)) / math.sqrt(d) * rng.uniform(0.3, 1.5)
        p["chols"].append(np.linalg.cholesky(a @ a.T + 0.2 * np.eye(d)))
    p["dx"] = dx
    return _monte_carlo_mi(p, dx, dy, rng, mc_draws, sample_mixture, mixture_pointwise_mi)


def sample_mixture(p: dict, dx: int, dy: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` base draws of a ``mixture`` task."""
    c = rng.choice(len(p["pi"]), size=n, p=p["pi"])
    z = rng.standard_normal((n, dx + dy))
    out = np.empty_like(z)
    for j, L in enumerate(p["chols"]):
        sel = c == j
        out[sel] = p["means"][j] + z[sel] @ L.T
    return out[:, :dx], out[:, dx:]


def _mixture_logpdf(p: dict, z: np.ndarray, idx: slice) -> np.ndarray:
    parts = []
    for j, L in enumerate(p["chols"]):
        cov = (L @ L.T)[idx, idx]
        Lb = np.linalg.cholesky(cov)
        r = np.linalg.solve(Lb, (z - p["means"][j][idx]).T)
        ld = 2.0 * np.log(np.diag(Lb)).sum()
        parts.append(math.log(p["pi"][j]) - 0.5 * (r * r).sum(0) - 0.5 * ld - 0.5 * len(cov) * math.log(2 * math.pi))
    return special.logsumexp(np.stack(parts), axis=0)


def mixture_pointwise_mi(p: dict, xb: np.ndarray, yb: np.ndarray) -> np.ndarray:
    """``log p(x, y) - log p(x) - log p(y)`` at base draws (exact mixture densities)."""
    dx = p["dx"]
    d = dx + yb.shape[1]
    z = np.concatenate([xb, yb], 1)
    return (_mixture_logpdf(p, z, slice(0, d)) - _mixture_logpdf(p, xb, slice(0, dx))
            - _mixture_logpdf(p, yb, slice(dx, d)))
