"""Hybrid MIST (set network + KSG/CCA statistics -> quantile head) and the second meta-prior.

Reference values are computed independently: KSG by a brute-force numpy implementation and by
``pyromi.baselines.ksg_mi``; the ``curve`` structure's MI by quadrature on a 4x finer, wider grid;
MI of hand-built non-monotone curves by Monte Carlo with many draws. Seeds are fixed.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import special

import pyromi.mist as mist
from pyromi import baselines
from pyromi.mist import families as fam
from pyromi.mist import structures as st
from pyromi.mist.hybrid import HybridConfig, HybridHead, hybrid_inputs, knn_features, num_inputs
from pyromi.mist.model import normalise_columns


@pytest.fixture(scope="module")
def pre():
    return mist.load_pretrained()


def _ksg_bruteforce(u, v, k):
    """KSG estimator 1 with Euclidean distances within X and Y and their max on the joint space."""
    n = len(u)
    dx = np.sqrt(((u[:, None] - u[None]) ** 2).sum(-1))
    dy = np.sqrt(((v[:, None] - v[None]) ** 2).sum(-1))
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    eps = np.sort(np.maximum(dx, dy), 1)[:, k - 1 : k]
    nx, ny = (dx < eps).sum(1), (dy < eps).sum(1)
    return special.digamma(k) + special.digamma(n) - np.mean(special.digamma(nx + 1) + special.digamma(ny + 1))


def test_knn_features_match_independent_ksg():
    rng = np.random.default_rng(0)
    for dx, dy, n in ((1, 1, 300), (3, 2, 200), (1, 5, 150)):
        x = rng.standard_normal((n, dx))
        y = x[:, :1] * 0.8 + rng.standard_normal((n, dy))
        u, v = normalise_columns(x, "rank"), normalise_columns(y, "rank")
        got = knn_features(u, v, (1, 4, 8))
        for i, k in enumerate((1, 4, 8)):
            assert got[i] == pytest.approx(_ksg_bruteforce(u, v, k), abs=1e-4), (dx, dy, k)
    # 1 x 1: Euclidean = max-norm marginals, and the two normal-score columns have equal spread,
    # so this is baselines.ksg_mi on the normal scores -- up to distances that tie with a point's
    # k-th neighbour distance in float32 but not in float64 (normal scores of a 1-D sample share
    # one grid of values): each such tie moves one count by one, the mean by at most 1/n
    n = 400
    x = rng.standard_normal((n, 1))
    y = np.sin(2 * x) + 0.3 * rng.standard_normal((n, 1))
    u, v = normalise_columns(x, "rank"), normalise_columns(y, "rank")
    assert knn_features(u, v, (5,))[0] == pytest.approx(baselines.ksg_mi(u, v, k=5), abs=1.0 / n)
    # tiny n: k is capped at n - 2, values finite
    f = knn_features(u[:10], v[:10], (1, 2, 4, 8))
    assert np.isfinite(f).all()


def test_spiral_is_invertible_norm_preserving_and_non_monotone():
    rng = np.random.default_rng(1)
    for d in (2, 3, 7):
        e1, e2, v = fam.spiral_params(d, rng)
        t = rng.standard_normal((500, d)) * 2
        s = fam.spiral(t, e1, e2, v)
        np.testing.assert_allclose(np.linalg.norm(s, axis=1), np.linalg.norm(t, axis=1), rtol=1e-12)
        # inverse: the angle depends on the (preserved) norm only; rotate back
        back = fam.spiral(s, e1, e2, -v)
        np.testing.assert_allclose(back, t, atol=1e-10)
        # some coordinate is non-monotone along a ray
        r = np.linspace(0.1, 4, 400)[:, None] * e1[None]
        assert np.any(np.diff(fam.spiral(r, e1, e2, v) @ e1) < 0)
    assert fam.spiral(np.ones((3, 1)), *fam.spiral_params(1, rng)).tolist() == [[1.0]] * 3  # d = 1: identity


def test_curve_quadrature_is_converged():
    """The ``curve`` densities by quadrature agree with a 4x finer and wider grid."""
    rng = np.random.default_rng(2)
    for dx, dy in ((1, 1), (3, 2), (6, 4)):
        task = fam.draw_task("curve-base", dx, dy, rng)
        xb, yb = task.sample_base(200, rng)
        fine = dict(task.params)
        nodes = np.linspace(-7, 7, 4 * st.GRID)
        w = np.exp(-0.5 * nodes**2)
        fine["nodes"], fine["weights"] = nodes, w / w.sum()
        np.testing.assert_allclose(st.curve_pointwise_mi(task.params, xb, yb), st.curve_pointwise_mi(fine, xb, yb),
                                   atol=1e-5)


def test_pairs_structure_covers_high_mi_in_one_dimension():
    """The second meta-prior has several nats in one dimension (the first stopped at 1.3)."""
    rng = np.random.default_rng(3)
    mis = [fam.draw_task("gauss-pairs-base", 1, 1, rng).mi for _ in range(400)]
    assert max(mis) > 4.0 and min(mis) < 0.05
    assert max(fam._draw_dependence("gauss-sparse", 1, 1, rng)[0] for _ in range(400)) < 1.4


def test_hybrid_weights_are_the_default_and_load(pre):
    assert pre.head is not None and pre.train_split == "train_v2" and len(pre.head.heads) == 2
    meta = json.loads((mist.WEIGHTS_DIR / f"{mist.DEFAULT_WEIGHTS}.json").read_text())
    assert meta["hybrid_config"]["ksg_ks"] == list(pre.head.cfg.ksg_ks)
    assert [m["use_base_quantiles"] for m in meta["hybrid_members"]] == [True, False]
    assert pre.head.kappa == meta["hybrid_kappa"]
    old = mist.load_pretrained("mist-medium")
    assert old.head is None and old.train_split == "train"
    rng = np.random.default_rng(4)
    x, y = fam.draw_task("gauss-2pair-base", 2, 2, rng).sample(300, rng)
    inp = hybrid_inputs(x, y, pre, pre.head.cfg)
    assert inp.shape == (num_inputs(pre.head.cfg),) and np.isfinite(inp).all()


def test_hybrid_head_mismatch_is_a_weights_error(pre, tmp_path):
    state = torch.load(mist.WEIGHTS_DIR / f"{mist.DEFAULT_WEIGHTS}.pt", weights_only=True)
    state["hybrid"]["members"][0]["config"]["hidden"] = 7  # no longer matches the stored tensors
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(mist.WeightsError, match="hybrid head does not match"):
        mist.load_checkpoint(tmp_path / "bad.pt")
    del state["hybrid"]["members"]
    torch.save(state, tmp_path / "bad2.pt")
    with pytest.raises(mist.WeightsError, match="hybrid head does not match"):
        mist.load_checkpoint(tmp_path / "bad2.pt")


def test_head_quantiles_monotone_nonnegative():
    cfg = HybridConfig(use_embedding=False)
    torch.manual_seed(0)
    head = HybridHead(cfg)
    q = head.log1p_quantiles(torch.randn(5, num_inputs(cfg)) * 3, torch.linspace(0.01, 0.99, 30))
    assert (q >= 0).all() and (q.diff(dim=1) >= 0).all()


def _curve_task(f_x, f_y, sigma_x, sigma_y, draws, rng):
    """A ``curve`` task with given coefficient sets (see pyromi.mist.structures) and its MI."""
    nodes, weights = st._grid()
    p = {"nodes": nodes, "weights": weights, "sigma_x": sigma_x, "sigma_y": sigma_y, "active_x": 1, "active_y": 1}
    for which, (a, w, c) in (("x", f_x), ("y", f_y)):
        f = {"a": np.array([[a, 0, 0]], float), "w": np.array([[w, 1, 1]], float), "phi": np.zeros((1, 3)),
             "c": np.array([c], float), "mu": np.zeros(1), "sd": np.ones(1)}
        vals = st._eval(f, nodes)
        f["mu"] = weights @ vals
        f["sd"] = np.sqrt(weights @ (vals - f["mu"]) ** 2)
        p[f"f_{which}"] = f
    xb, yb = st.sample_curve(p, 1, 1, draws, rng)
    pm = st.curve_pointwise_mi(p, xb, yb)
    return p, float(pm.mean()), float(pm.std() / math.sqrt(draws))


_CURVES = ((2.0, 0.1, 0.1), (3.0, 0.05, 0.2), (1.5, 0.3, 0.05), (2.5, 0.2, 0.2), (1.0, 0.05, 0.05), (3.0, 0.3, 0.3))


@pytest.fixture(scope="module")
def curve_cases(pre):
    """x = s + noise, y = sin(w s) + noise (non-monotone), n = 2000, truth by Monte Carlo (20000
    draws); MIST (hybrid and the previous mist-medium) and KSG on each."""
    rng = np.random.default_rng(5)
    out = []
    for w, sx, sy in _CURVES:
        p, truth, se = _curve_task((0.0, 1.0, 1.0), (1.0, w, 0.0), sx, sy, 20000, rng)
        assert se < 0.02
        x, y = st.sample_curve(p, 1, 1, 2000, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            e = mist.estimate(x, y, model=pre)
            old = mist.estimate(x, y, model="mist-medium")
        out.append((truth, e, old, max(0.0, baselines.ksg_mi(x, y))))
    return out


def test_non_monotone_one_dimensional_relations(curve_cases):
    """The first MIST reported half the MI or less on such relations: the hybrid's interval covers
    the truth in at least 5 of 6 cases and its error is at most half the previous weights'."""
    cover = sum(e.lower <= t and (e.upper is None or t <= e.upper) for t, e, _, _ in curve_cases)
    err = np.mean([abs(e.value - t) for t, e, _, _ in curve_cases])
    err_old = np.mean([abs(o.value - t) for t, _, o, _ in curve_cases])
    assert cover >= 5, [(t, e.lower, e.upper) for t, e, _, _ in curve_cases]
    assert err <= 0.5 * err_old, (err, err_old)


@pytest.mark.xfail(strict=True, reason="issue 14 goal not met yet: on 1 x 1 non-monotone curves at n = 2000 the "
                   "hybrid's error is about 2.4 x KSG's (0.06 vs 0.025 nats); see the issue note")
def test_non_monotone_one_dimensional_not_worse_than_ksg(curve_cases):
    """Goal: never much worse than the classical estimator MIST reads (KSG is nearly exact in 1 x 1)."""
    err = np.mean([abs(e.value - t) for t, e, _, _ in curve_cases])
    err_ksg = np.mean([abs(k - t) for t, _, _, k in curve_cases])
    assert err <= 1.2 * err_ksg, (err, err_ksg)


def test_low_dimensional_gaussians_not_worse_than_ksg(pre):
    """Correlated Gaussians in 1..3 dimensions per side with up to 5 nats (the first MIST was off by
    0.2-1.3 nats there): MIST's mean absolute error over 12 fixed-seed tasks is at most 1.2 x KSG's."""
    rng = np.random.default_rng(6)
    err_m, err_k = [], []
    for i in range(12):
        dx, dy = (int(v) for v in rng.integers(1, 4, 2))
        mi = float(rng.uniform(0.05, 5.0))
        k = min(dx, dy)
        rho = math.sqrt(-math.expm1(-2 * mi / k))
        x = rng.standard_normal((1000, dx))
        y = rng.standard_normal((1000, dy))
        y[:, :k] = rho * x[:, :k] + math.sqrt(1 - rho**2) * y[:, :k]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            e = mist.estimate(np.arcsinh(x * 3), y ** 3, model=pre)  # monotone maps: same MI
        err_m.append(abs(e.value - mi))
        err_k.append(abs(max(0.0, baselines.ksg_mi(x, y)) - mi))
    assert np.mean(err_m) <= 1.2 * np.mean(err_k), (err_m, err_k)


def test_hybrid_data_is_deterministic_and_resumes(tmp_path):
    """The meta-data writer: a run cut short and resumed gives the same sets as one run."""
    from pyromi.mist import hybrid_data

    args = ["--count", "7", "--worker", "3", "--seed", "11"]
    hybrid_data.main(["--out", str(tmp_path / "one"), *args])
    hybrid_data.main(["--out", str(tmp_path / "two"), "--count", "4", "--worker", "3", "--seed", "11"])
    hybrid_data.main(["--out", str(tmp_path / "two"), *args, "--resume"])
    a = np.load(tmp_path / "one" / "part-train_v2-3.npz")
    b = np.load(tmp_path / "two" / "part-train_v2-3.npz")
    assert len(a["mi"]) == 7 and set(a.files) == set(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    assert np.isfinite(a["inputs"]).all() and (a["mi"] >= 0).all()


def test_tied_and_discrete_columns(pre):
    """Rounded or discrete columns (ties): the hybrid reads normal scores with ties ranked at random
    (the MI of the tied values is unchanged), not zero distances -- before, a Gaussian rounded to 0.1
    read as 128 nats. Rounding to 0.1 keeps the MI of rho = 0.8 (0.511) up to a little
    information lost; binary x == y has I = log 2; the lower ends never exceed the truth."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1000, 1))
    y = 0.8 * x + 0.6 * rng.standard_normal((1000, 1))
    truth = -0.5 * math.log(1 - 0.64)
    with pytest.warns(UserWarning, match="distinct values"):
        e = mist.estimate(np.round(x, 1), np.round(y, 1), model=pre)
    assert e.lower <= truth <= e.upper and abs(e.value - truth) < 0.1, e
    b = rng.integers(0, 2, (1000, 1)).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = mist.estimate(b, b.copy(), model=pre)
        again = mist.estimate(b, b.copy(), model=pre)
    assert e.lower <= math.log(2) and (e.upper is None or math.log(2) <= e.upper), e
    assert e.value == again.value  # the tie order comes from a private generator seeded by seed=
