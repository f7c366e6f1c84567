"""KSG and CCA (pyromi.baselines) on tied, degenerate and extreme inputs: a number near a known
truth with a warning naming the ties, or a ValueError naming the argument; never a silent wrong or
non-finite number.

Tolerances: the spread of each estimator was measured over 40 independent data sets of the same
size (standard deviations quoted per test); a test allows 4 of them plus the measured mean bias.
"""

import math
import warnings

import numpy as np
import pytest
from scipy.stats import norm

from pyromi.baselines import cca_mi, infonce_mi, ksg_mi
from pyromi.errors import PyromiError

RHO = 0.9
GAUSS_MI = -0.5 * math.log(1 - RHO**2)  # 0.8304 nats


def _pair(n, seed):
    """A standard bivariate Gaussian pair with correlation RHO, drawn as users do: default_rng(seed)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n)
    b = RHO * a + math.sqrt(1 - RHO**2) * rng.standard_normal(n)
    return a, b


def _rounded_pair_mi(rho: float, h: float) -> float:
    """I(round(a / h); round(b / h)) for a standard bivariate Gaussian (a, b) with correlation rho:
    the cell probabilities P(i, j) = int phi(a) [Phi((j+1/2)h - rho a)/s) - Phi(((j-1/2)h - rho a)/s)] da
    over a in cell i, by the midpoint rule on 80 001 points of [-9, 9] (error far below 1e-6)."""
    s = math.sqrt(1 - rho**2)
    step = 18.0 / 80_000
    a = -9.0 + step * (np.arange(80_001) + 0.5)
    w = norm.pdf(a) * step
    edges = (np.arange(-int(9 / h) - 2, int(9 / h) + 3) + 0.5) * h
    pb = np.diff(norm.cdf((edges[None, :] - rho * a[:, None]) / s), axis=1)  # P(b in cell j | a)
    _, cell_a = np.unique(np.floor(a / h + 0.5), return_inverse=True)
    p = np.zeros((cell_a.max() + 1, pb.shape[1]))
    np.add.at(p, cell_a, w[:, None] * pb)
    p /= p.sum()
    indep = p.sum(1, keepdims=True) * p.sum(0, keepdims=True)
    m = p > 0
    return float((p[m] * np.log(p[m] / indep[m])).sum())


def test_ksg_on_a_rounded_gaussian_pair_is_near_the_discrete_truth_and_warns():
    """A Gaussian pair (rho = 0.9) rounded to a 0.5 grid: 1000 rows, 27 distinct values per column.
    Its MI (of the rounded values) is 0.7509 nats; KSG's s.d. over 40 data sets is 0.03 (mean bias
    +0.01), so 4 s.d. + bias = 0.13. The old tie-breaking noise came from np.random.default_rng(seed),
    the stream the data themselves were drawn from, so it was correlated with the rounded-off parts
    and the estimate was 1.61 nats."""
    truth = _rounded_pair_mi(RHO, 0.5)
    assert abs(truth - 0.7509) < 1e-3
    a, b = _pair(1000, 0)
    x, y = (np.round(a / 0.5) * 0.5)[:, None], (np.round(b / 0.5) * 0.5)[:, None]
    with pytest.warns(UserWarning, match=r"tied values \(x\[:, 0\] has \d+ distinct values in 1000") as rec:
        est = ksg_mi(x, y)
    assert "seeded noise" in str(rec[0].message)
    assert abs(est - truth) <= 0.13, (est, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        others = [ksg_mi(x, y, seed=s) for s in (1, 2)]  # the tie-breaking seed moves it by noise only
    assert all(abs(v - truth) <= 0.13 for v in others), others


def test_ksg_on_a_discrete_x_with_continuous_noise():
    """x uniform on {0, 1, 2, 3}, y = x + N(0, 0.5^2): I = h(y) - h(noise) = 0.8452 nats (1-D
    quadrature). KSG's s.d. over 40 data sets of 1000 rows is 0.02 (mean bias +0.012): tolerance 0.1."""
    grid = np.linspace(-6.0, 9.0, 150_001)
    dens = sum(norm.pdf(grid, loc=v, scale=0.5) for v in range(4)) / 4
    truth = -np.sum(dens * np.log(dens)) * (grid[1] - grid[0]) - 0.5 * math.log(2 * math.pi * math.e * 0.25)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, 1000).astype(float)
    y = x + 0.5 * rng.standard_normal(1000)
    with pytest.warns(UserWarning, match=r"x\[:, 0\] has 4 distinct values in 1000"):
        est = ksg_mi(x[:, None], y[:, None])
    assert abs(est - truth) <= 0.1, (est, truth)


def test_ksg_on_repeated_rows_names_the_cause_and_the_fix():
    """200 Gaussian rows (rho = 0.9, MI 0.83 nats) each repeated 10 times: KSG counts the repeats as
    atoms and returns ~ log 200 = 5.3. The warning says that every tie is a repeated row and how to
    drop them; on the distinct rows KSG is back near the truth (s.d. 0.08 at n = 200: tolerance 0.32)."""
    a, b = _pair(200, 0)
    x, y = np.tile(a, 10)[:, None], np.tile(b, 10)[:, None]
    with pytest.warns(UserWarning, match=r"1800 of 2000 rows repeat another row") as rec:
        inflated = ksg_mi(x, y)
    msg = str(rec[0].message)
    assert "Every tie here is a whole repeated row (200 distinct rows)" in msg
    assert "--drop-duplicates" in msg and "log 200 = 5.30" in msg
    assert inflated > 4.0  # what the warning explains
    xy = np.unique(np.c_[x, y], axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ties left: no warning
        assert abs(ksg_mi(xy[:, :1], xy[:, 1:]) - GAUSS_MI) <= 0.32


def test_ksg_without_ties_is_silent_and_seed_free():
    a, b = _pair(500, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ksg_mi(a[:, None], b[:, None], seed=0) == ksg_mi(a[:, None], b[:, None], seed=7)


@pytest.mark.parametrize("scale", [1e-300, 1e200, 1e300])
def test_extreme_magnitudes_give_the_same_estimates(scale):
    """MI is scale-free: x * 1e300 must not overflow the standardisation (the old a.std() of values
    ~1e200 was inf, which zeroed the column)."""
    a, b = _pair(300, 2)
    x, y = a[:, None], b[:, None]
    assert ksg_mi(x * scale, y) == pytest.approx(ksg_mi(x, y), abs=1e-9)
    assert cca_mi(x * scale, y) == pytest.approx(cca_mi(x, y), abs=1e-9)
    c = np.random.default_rng(3).standard_normal(300)  # a second x column, at the other end of float64
    wide = np.c_[a * scale, c / scale]
    assert cca_mi(wide, y) == pytest.approx(cca_mi(np.c_[a, c], y), abs=1e-9)
    assert ksg_mi(wide, y) == pytest.approx(ksg_mi(np.c_[a, c], y), abs=1e-9)


@pytest.mark.parametrize("call,match", [
    (lambda x, y: ksg_mi(np.c_[x, np.ones(50)], y), r"column\(s\) \[1\] of x are constant"),
    (lambda x, y: ksg_mi(x, np.where(np.arange(50)[:, None] == 3, np.nan, y)), r"y has 1 NaN or infinite"),
    (lambda x, y: ksg_mi(np.where(np.arange(50)[:, None] == 0, np.inf, x), y), r"x has 1 NaN or infinite"),
    (lambda x, y: ksg_mi(x[:6], y[:6], k=5), r"k=5 neighbours needs n >= k \+ 2 = 7 rows, got n=6"),
    (lambda x, y: ksg_mi(x, y, k=True), r"k must be a positive int"),
    (lambda x, y: ksg_mi(x, y, k=-1), r"k must be a positive int"),
    (lambda x, y: ksg_mi(x, y, seed=-1), r"seed must be a non-negative int"),
    (lambda x, y: ksg_mi(x, y, jitter=0.5), r"jitter must be a float in \(0, 1e-3\]"),
    (lambda x, y: cca_mi(np.c_[x, np.ones(50)], y), r"column\(s\) \[1\] of x are constant"),
    (lambda x, y: cca_mi(x, np.where(np.arange(50)[:, None] == 3, np.nan, y)), r"y has 1 NaN"),
    (lambda x, y: cca_mi(np.c_[x, 2 * x + 1], y), r"columns of x are linearly dependent.*shrinkage"),
    (lambda x, y: cca_mi(x, np.c_[y, y - x, x]), r"columns of y are linearly dependent"),
    (lambda x, y: cca_mi(x, 3 * x - 1), r"canonical correlation between x and y is 1.*infinite"),
    (lambda x, y: cca_mi(np.c_[x, y], y + x), r"canonical correlation between x and y is 1"),
    (lambda x, y: infonce_mi(x, y, batch_size=0), r"batch_size must be an int >= 2"),
    (lambda x, y: infonce_mi(x, y, lr=-1.0), r"lr must be a positive float"),
    (lambda x, y: infonce_mi(x, y, seed=None), r"needs an int seed"),
])
def test_degenerate_inputs_raise_naming_the_argument(call, match):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, 1))
    y = x + rng.standard_normal((50, 1))
    with pytest.raises(PyromiError, match=match):
        call(x, y)


def test_cca_shrinkage_keeps_a_finite_value_for_exact_relations():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((100, 1))
    v = cca_mi(x, 2 * x, shrinkage=1e-3)
    assert math.isfinite(v) and v == pytest.approx(-0.5 * math.log(1 - 0.999**2), rel=1e-6)
