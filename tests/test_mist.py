"""MIST: generator formulas vs Monte Carlo, network invariances, shipped weights, inputs, baselines.

Monte Carlo tolerances: a closed-form MI is compared with the mean of the pointwise MI
``log p(x, y) - log p(x) - log p(y)`` over N base draws; it must lie within ``Z = 4`` standard
errors ``std / sqrt(N)`` (seeds fixed, so every test is deterministic).
"""

from __future__ import annotations

import warnings
import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

import pyromi.mist as mist
from pyromi import baselines
from pyromi.errors import PyromiError
from pyromi.mist import families as fam
from pyromi.mist.model import MISTConfig, MISTNet, collate, encode_set, widen_state_dict

Z = 4.0


def _gauss_pair(n, rho, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    return z[:, :1], rho * z[:, :1] + math.sqrt(1 - rho**2) * z[:, 1:]


# ----------------------------------------------------------------------------- generator


@pytest.mark.parametrize("structure", fam.STRUCTURES)
def test_family_mi_matches_monte_carlo(structure):
    """Closed-form MI (dx != dy) vs the Monte Carlo mean of the pointwise MI of base draws (for the
    ``curve`` and ``mixture`` structures, whose MI is itself a Monte Carlo value with standard error
    ``params["mi_se"]``, the two errors add in quadrature)."""
    rng = np.random.default_rng([11, fam.STRUCTURES.index(structure)])
    for dx, dy in ((2, 3), (4, 1), (1, 1)):
        task = fam.draw_task(f"{structure}-base", dx, dy, rng)
        xb, yb = task.sample_base(4000 if "mi_se" in task.params else 20000, rng)  # quadrature costs O(N x grid)
        pm = fam.pointwise_mi(task, xb, yb)
        se = math.hypot(pm.std() / math.sqrt(len(pm)), task.params.get("mi_se", 0.0))
        assert abs(pm.mean() - task.mi) <= Z * se + 1e-9, (structure, dx, dy, task.mi, pm.mean(), se)


def test_student_and_additive_formulas():
    # student correction: positive, decreasing in nu, -> 0 as nu -> inf
    c = [fam.student_mi_correction(3, 2, nu) for nu in (1.0, 3.0, 10.0, 1e4)]
    assert all(a > b for a, b in zip(c, c[1:])) and c[-1] < 1e-3 and c[0] > 0.1
    # bivariate t, identity dispersion, nu = 1: known value log(2) + ... cross-check by numerics:
    # h_1(1) is the Cauchy entropy log(4 pi)
    assert fam.student_t_entropy(1, 1.0) == pytest.approx(math.log(4 * math.pi), rel=1e-12)
    # additive noise is continuous at eps = 1/2 and matches log(1/(2e)) + e
    assert fam.additive_mi(np.array([0.5])) == pytest.approx(0.5)
    assert fam.additive_mi(np.array([0.1, 2.0])) == pytest.approx(0.1 - math.log(0.2) + 1 / 8)
    # Gaussian: bivariate formula
    cov = np.array([[1.0, 0.6], [0.6, 1.0]])
    assert fam.gaussian_mi(cov, 1) == pytest.approx(-0.5 * math.log(1 - 0.36))


def test_transforms_are_invertible_and_monotone():
    rng = np.random.default_rng(3)
    for d in (1, 2, 5):
        flow = fam.RandomFlow.random(d, rng)
        x = rng.standard_normal((200, d)) * 3
        np.testing.assert_allclose(flow.inverse(flow.forward(x)), x, atol=1e-8)
    t = np.linspace(-20, 20, 20001)
    for fx, fy in fam._MONOTONE.values():
        assert np.all(np.diff(fx(t)) > 0) and np.all(np.diff(fy(t)) > 0)
    assert not np.allclose(fam.wiggly_x(t), fam.wiggly_y(t))  # X and Y get different wiggly maps


def test_sample_is_transform_of_base_and_seeded():
    """task.sample = per-block injective maps of a base draw; equal seeds give equal sets."""
    for family in ("gauss-lvm-flow", "student-2pair-wiggly", "additive-halfcube"):
        task = fam.draw_task(family, 3, 2, np.random.default_rng(5))
        xb, yb = task.sample_base(50, np.random.default_rng(9))
        x, y = task.sample(50, np.random.default_rng(9))
        np.testing.assert_allclose(x, task.transform_block(xb, "x"))
        np.testing.assert_allclose(y, task.transform_block(yb, "y"))
    big = 2**100 + 12345  # full-width seeds
    a = fam.draw_set(fam.SPLITS["train"], 30, np.random.default_rng([big, 1]))
    b = fam.draw_set(fam.SPLITS["train"], 30, np.random.default_rng([big, 1]))
    c = fam.draw_set(fam.SPLITS["train"], 30, np.random.default_rng([big + 1, 1]))
    assert a.mi == b.mi and np.array_equal(a.x, b.x) and not np.array_equal(a.x, c.x)


def test_splits_are_disjoint():
    s = {k: set(v) for k, v in fam.SPLITS.items()}
    assert not s["val"] & s["test_imd"] and not s["val"] & s["test_unseen"]
    assert not s["test_unseen"] & s["train"] and s["test_imd"] <= s["train"]
    assert not s["val_held_out"] & s["train"]
    with pytest.raises(ValueError, match="unknown family"):
        fam.parse_family("gauss-dense-twirl")
    # second meta-prior: the mixture structure and the spiral transform are test-only
    assert not s["test_unseen_v2"] & s["train_v2"] and s["test_imd_v2"] <= s["train_v2"]
    assert {f for f in fam.SPLITS["test_unseen_v2"] if f.startswith("mixture") or f.endswith("spiral")}
    assert not any(f.startswith("mixture") or f.endswith("spiral") for f in s["train_v2"])


def test_dx_ne_dy_every_structure():
    rng = np.random.default_rng(4)
    for s in fam.STRUCTURES:
        for dx, dy in ((1, 6), (6, 1)):
            t = fam.draw_task(f"{s}-flow", dx, dy, rng)
            x, y = t.sample(20, rng)
            assert x.shape == (20, dx) and y.shape == (20, dy) and t.mi >= 0 and np.isfinite(x).all()


# ----------------------------------------------------------------------------- network


def _tiny_net(seed=0, d_max=4):
    torch.manual_seed(seed)
    cfg = MISTConfig(d_max=d_max, dim=32, heads=2, num_inducing=8, num_isab=1, num_seeds=2, ffn=64,
                     row_hidden=64, head_hidden=64, num_basis=8)
    return MISTNet(cfg).eval(), cfg


def test_network_permutation_and_padding_invariance():
    net, cfg = _tiny_net()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((40, 2))
    taus = torch.tensor([0.1, 0.5, 0.9])
    with torch.no_grad():
        q = net(*collate([encode_set(x, y, cfg)]), taus)
        p = rng.permutation(40)
        qp = net(*collate([encode_set(x[p], y[p], cfg)]), taus)
        other = encode_set(rng.standard_normal((75, 4)), rng.standard_normal((75, 1)), cfg)
        tok, mask, feats = collate([encode_set(x, y, cfg), other])  # first set padded 40 -> 75 rows
        tok[0, 40:] = 1e3 * torch.randn(35, tok.shape[-1])  # garbage in the padding must not matter
        qpad = net(tok, mask, feats, taus)[0]
    torch.testing.assert_close(qp, q, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(qpad, q[0], atol=1e-5, rtol=1e-5)


def test_quantiles_monotone_in_tau_and_nonnegative():
    net, cfg = _tiny_net(1)
    rng = np.random.default_rng(1)
    enc = [encode_set(rng.standard_normal((30, 2)), rng.standard_normal((30, 3)), cfg) for _ in range(4)]
    taus = torch.linspace(0.001, 0.999, 300)
    with torch.no_grad():
        for seed in range(3):  # any weights: monotone by construction
            torch.manual_seed(seed)
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            q = net(*collate(enc), taus)
            assert (q >= 0).all() and (q.diff(dim=1) >= 0).all()


def test_roles_are_explicit():
    """X in x-slots, Y in y-slots, with presence masks (no inference from zero patterns)."""
    cfg = MISTConfig(d_max=4)
    rng = np.random.default_rng(2)
    tok, feats = encode_set(rng.standard_normal((20, 1)), rng.standard_normal((20, 3)), cfg)
    assert tok.shape == (20, 16)
    assert (tok[:, 8:12] == [1, 0, 0, 0]).all() and (tok[:, 12:16] == [1, 1, 1, 0]).all()
    assert (tok[:, 1:4] == 0).all() and (tok[:, 7] == 0).all()
    # rank normalisation: invariant to increasing maps of a column
    x, y = rng.standard_normal((20, 2)), rng.standard_normal((20, 2))
    t1, f1 = encode_set(x, y, cfg)
    t2, f2 = encode_set(np.exp(x), y**3, cfg)
    np.testing.assert_allclose(t1, t2)
    np.testing.assert_allclose(f1, f2, rtol=1e-5, atol=1e-6)


def test_widen_state_dict_preserves_the_function():
    """A network widened from d_max 4 to 7 gives the same quantiles on every sample it could read
    before, and the new slots are live (a 6-column sample is not read as a 4-column one)."""
    net, cfg = _tiny_net(3)
    with torch.no_grad():
        for p in net.parameters():  # non-trivial weights everywhere, incl. the set-feature MLP
            p.add_(0.3 * torch.randn_like(p))
    wide_cfg = replace(cfg, d_max=7, n_max=2000)
    wide = MISTNet(wide_cfg).eval()
    wide.load_state_dict(widen_state_dict(net.state_dict(), cfg, wide_cfg))
    rng = np.random.default_rng(3)
    taus = torch.tensor([0.05, 0.5, 0.95])
    with torch.no_grad():
        for dx, dy, n in ((1, 1, 15), (4, 2, 60), (3, 4, 200)):
            x, y = rng.standard_normal((n, dx)), rng.standard_normal((n, dy))
            x[:, 0] += y[:, 0]
            q = net(*collate([encode_set(x, y, cfg)]), taus)
            qw = wide(*collate([encode_set(x, y, wide_cfg)]), taus)
            torch.testing.assert_close(qw, q, atol=1e-5, rtol=1e-5)
        tok, mask, feats = collate([encode_set(rng.standard_normal((50, 6)), rng.standard_normal((50, 2)), wide_cfg)])
        assert wide.row[0].weight[:, 4:7].abs().sum() == 0  # new slots start at zero weight ...
        assert tok[0, :, 4:6].abs().sum() > 0  # ... but carry the extra columns for training to use
    with pytest.raises(ValueError, match="only d_max"):
        widen_state_dict(net.state_dict(), cfg, replace(cfg, d_max=7, dim=48))
    with pytest.raises(ValueError, match="cannot narrow"):
        widen_state_dict(wide.state_dict(), wide_cfg, cfg)


# ----------------------------------------------------------------------------- shipped weights


@pytest.fixture(scope="module")
def pre():
    return mist.load_pretrained()


def test_weights_load_and_hash(pre, tmp_path, monkeypatch):
    meta = json.loads((mist.WEIGHTS_DIR / f"{mist.DEFAULT_WEIGHTS}.json").read_text())
    assert pre.sha256 == meta["sha256"] and len(pre.sha256) == 64
    assert mist.load_pretrained() is pre  # cached
    assert pre.num_parameters == meta["training"]["parameters"]
    # corrupt copy -> integrity error; missing -> clear error; never random weights
    d = tmp_path / "w"
    d.mkdir()
    shutil.copy(mist.WEIGHTS_DIR / f"{mist.DEFAULT_WEIGHTS}.json", d / "bad.json")
    raw = bytearray((mist.WEIGHTS_DIR / f"{mist.DEFAULT_WEIGHTS}.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / "bad.pt").write_bytes(bytes(raw))
    monkeypatch.setattr(mist, "WEIGHTS_DIR", d)
    with pytest.raises(mist.WeightsError, match="SHA-256"):
        mist.load_pretrained("bad")
    with pytest.raises(mist.WeightsError, match="not found.*Reinstall"):
        mist.load_pretrained("absent")


def test_every_shipped_weights_file_loads_and_matches_its_record():
    """Each weights/<name>.pt has a .json whose SHA-256, config and parameter count match, and a
    recorded training-MI 99th percentile; the previous default stays loadable by name."""
    names = sorted(p.stem for p in mist.WEIGHTS_DIR.glob("*.pt"))
    assert mist.DEFAULT_WEIGHTS in names and {"mist-small", "mist-medium"} <= set(names)
    for name in names:
        meta = json.loads((mist.WEIGHTS_DIR / f"{name}.json").read_text())
        pre = mist.load_pretrained(name)
        assert pre.sha256 == meta["sha256"] and pre.config.to_dict() == meta["config"]
        assert pre.num_parameters == meta["training"]["parameters"]
        assert 0 < pre.trained_mi_q99 == meta["trained_mi_q99"]
        # per-shape training range (range check): symmetric d_max x d_max table, drawn reproducibly
        table = np.asarray(meta["trained_mi_q99_by_shape"])
        assert table.shape == (pre.config.d_max,) * 2 and np.array_equal(table, table.T)
        assert pre.trained_mi_q99_for(3, 1) == pre.trained_mi_q99_for(1, 3) == table[0, 2] > 0
    pre = mist.load_pretrained()
    draws = pre.meta.get("trained_mi_q99_by_shape_draws", 4000)
    assert pre.trained_mi_q99_for(1, 2) == round(fam.mi_quantile_shape(fam.SPLITS[pre.train_split], 1, 2, draws=draws), 2)


def test_estimate_covers_gaussian_truth(pre):
    """Known-MI Gaussians (dx != dy) land inside the 90% interval; the result has the MIST fields."""
    rng = np.random.default_rng(123)
    task = fam.draw_task("gauss-2pair-base", 3, 2, rng)  # two pairs, MI in closed form
    x, y = task.sample(800, rng)
    est = mist.estimate(x, y)
    assert est.bound == "mist" and est.level == 0.9 and est.num_samples == 800
    assert est.lower <= est.value <= est.upper and est.value == est.point
    assert est.lower <= task.mi <= est.upper, (task.mi, est)
    assert est.settings["sha256"] == pre.sha256 and est.diagnostics["blocks"] == 1
    # several random Gaussians: a 90% interval may miss some, but not many
    hits = 0
    for i in range(10):
        t = fam.draw_task(["gauss-dense-base", "gauss-sparse-base", "gauss-lvm-base"][i % 3], 1 + i % 4, 1 + (i * 3) % 5, rng)
        xs, ys = t.sample(300, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mist.MISTRangeWarning)
            e = mist.estimate(xs, ys)
        hits += e.lower <= t.mi <= (math.inf if e.upper is None else e.upper)  # None: open above
    assert hits >= 7  # P(<= 6 of 10 | p = 0.9) = 1.3%
    wide = mist.estimate(x, y, level=0.98)
    assert wide.lower <= est.lower and wide.upper >= est.upper


def test_estimate_invariances_and_inputs(pre):
    rng = np.random.default_rng(7)
    task = fam.draw_task("student-sparse-base", 2, 4, rng)
    x, y = task.sample(400, rng)
    e = mist.estimate(x, y)
    p = rng.permutation(400)
    ep = mist.estimate(x[p], y[p])
    assert ep.value == pytest.approx(e.value, rel=1e-4, abs=1e-5)
    et = mist.estimate(torch.from_numpy(x).float(), torch.from_numpy(y))  # torch input
    assert et.value == pytest.approx(e.value, rel=1e-3, abs=1e-4)
    em = mist.estimate(np.sinh(x), y**3)  # monotone marginal maps: rank inputs make this exact
    assert em.value == pytest.approx(e.value, rel=1e-4, abs=1e-5)
    q = mist.quantiles(x, y, [0.05, 0.5, 0.95])
    np.testing.assert_allclose(q, [e.lower, e.value, e.upper], rtol=1e-6)


def test_subsample_and_combine(pre):
    n_max = pre.config.n_max
    rng = np.random.default_rng(8)
    task = fam.draw_task("gauss-sparse-base", 2, 2, rng)
    n = 2 * n_max + 7
    x, y = task.sample(n, rng)
    e1 = mist.estimate(x, y, seed=0)
    e2 = mist.estimate(x, y, seed=0)
    assert e1.diagnostics["blocks"] == 3 and e1.value == e2.value
    single = mist.estimate(x[:n_max], y[:n_max])
    assert e1.width <= single.width * 1.5  # combining blocks does not widen the interval
    assert e1.lower <= task.mi <= e1.upper


def test_input_errors(pre):
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((50, 2)), rng.standard_normal((50, 3))
    cases = [
        ((x[:, 0], y), {}, r"x must be 2-D.*reshape\(-1, 1\)"),
        ((x, y[None]), {}, r"y must be 2-D"),
        ((x, y[:40]), {}, r"same number of rows.*x: 50.*y: 40"),
        ((np.where(np.arange(100).reshape(50, 2) == 7, np.nan, x), y), {}, r"x has 1 NaN or infinite.*row 3.*drop"),
        ((x, np.where(np.arange(150).reshape(50, 3) == 0, np.inf, y)), {}, r"y has 1 NaN or infinite.*row 0"),
        ((x[:5], y[:5]), {}, r"n=5.*n >= 10.*pass at least"),
        ((rng.standard_normal((50, pre.config.d_max + 1)), y), {}, rf"x has {pre.config.d_max + 1} columns.*1\.\.{pre.config.d_max}.*reduce"),
        ((x, rng.standard_normal((50, pre.config.d_max + 3))), {}, r"y has .* columns.*reduce y"),
        ((np.c_[x, np.ones(50)], y), {}, r"column\(s\) \[2\] of x are constant.*drop"),
        ((x, np.zeros((50, 0))), {}, r"y has no columns"),
        ((x.astype(str), y), {}, r"x must be a real numeric array"),
    ]
    for args, kw, msg in cases:
        with pytest.raises(PyromiError, match=msg):
            mist.estimate(*args, **kw)
    for bad in (0.0, 1.0, 1.5, -0.1, "0.9", True, None):
        with pytest.raises(PyromiError, match=r"level must be a float in \(0, 1\)"):
            mist.estimate(x, y, level=bad)
    with pytest.raises(PyromiError, match="taus must be"):
        mist.quantiles(x, y, [0.5, 1.0])
    with pytest.raises(PyromiError, match="model= must be"):
        mist.estimate(x, y, model=3)
    with pytest.warns(UserWarning, match="distinct values"):
        mist.estimate(np.round(x), y)
    assert issubclass(PyromiError, ValueError)


# ----------------------------------------------------------------------------- baselines


def test_ksg_bivariate_gaussian():
    """KSG-1 (k = 5) on a bivariate Gaussian: mean over 5 seeds within Z se (+0.02 KSG bias) of the truth."""
    rho = 0.6
    true = -0.5 * math.log(1 - rho**2)
    vals = np.array([baselines.ksg_mi(*_gauss_pair(1000, rho, s)) for s in range(5)])
    se = vals.std(ddof=1) / math.sqrt(len(vals))
    assert abs(vals.mean() - true) <= Z * se + 0.02, (vals, true)
    ind = np.array([baselines.ksg_mi(*_gauss_pair(1000, 0.0, s)) for s in range(5)])
    assert abs(ind.mean()) <= Z * ind.std(ddof=1) / math.sqrt(5) + 0.01


def test_ksg_uses_full_blocks_and_handles_ties():
    """Dependence only between x[:, 1] and y[:, 1]: KSG on the blocks sees it (the reference's
    column-0-vs-column-1 flaw would report ~0); duplicated rows do not break it."""
    rng = np.random.default_rng(0)
    a, b, c = rng.standard_normal((3, 1500))
    x = np.c_[a, b]
    y = np.c_[c, b + 0.5 * rng.standard_normal(1500)]
    true = 0.5 * math.log(1 + 1 / 0.25)
    assert abs(baselines.ksg_mi(x, y) - true) < 0.15
    xd, yd = np.r_[x, x[:200]], np.r_[y, y[:200]]  # exact duplicates
    assert np.isfinite(baselines.ksg_mi(xd, yd))
    with pytest.raises(PyromiError, match="k must be a positive int"):
        baselines.ksg_mi(x, y, k=0)


def test_cca_gaussian():
    """CCA MI within Z asymptotic se (sqrt(sum rho_i^2 / n)) + the dx dy / (2n) bias of the truth."""
    rng = np.random.default_rng(1)
    task = fam.draw_task("gauss-lvm-base", 3, 2, rng)
    n = 20000
    x, y = task.sample(n, rng)  # affine maps + permutations do not change CCA
    cov = task.params["cov"]
    sxx, syy, sxy = cov[:3, :3], cov[3:, 3:], cov[:3, 3:]
    rho2 = np.linalg.eigvals(np.linalg.solve(sxx, sxy) @ np.linalg.solve(syy, sxy.T)).real
    tol = Z * math.sqrt(rho2.sum() / n) + 3 * 2 / (2 * n)
    assert abs(baselines.cca_mi(x, y) - task.mi) <= tol
    with pytest.raises(PyromiError, match="n > dx \\+ dy"):
        baselines.cca_mi(x[:4], y[:4])
    assert np.isfinite(baselines.cca_mi(x[:4], y[:4], shrinkage=1e-3))


def test_infonce_runs():
    x, y = _gauss_pair(200, 0.8, 0)
    est, sec = baselines.infonce_mi(x, y, steps=30, batch_size=32, hidden=16, return_seconds=True)
    assert np.isfinite(est) and est <= math.log(200) + 1e-6 and sec > 0


# ----------------------------------------------------------------------------- training and export


def test_combine_rule():
    """Block quantiles (log(1 + I) scale) combine as m = mean medians, d = s * mean deviations,
    u = m + f d with f = max(B^-gamma, sqrt(1 - (1 - 1/B) min(1, (z sigma / d)^2)))."""
    from scipy.stats import norm

    taus = np.array([0.05, 0.5, 0.95])
    u = np.array([[0.5, 1.0, 2.0], [0.7, 1.2, 1.6], [0.3, 0.8, 1.4], [0.6, 1.0, 2.2]])
    s = np.array([1.2, 1.0, 1.2])
    out = mist._combine(u, taus, 0.5, s)
    m = 1.0
    d = s * (u - u[:, 1:2]).mean(0)
    sigma = u[:, 1].std(ddof=1)
    f = np.sqrt(1 - 0.75 * np.minimum(1, (norm.ppf(0.95) * sigma / np.abs(d[[0, 2]])) ** 2))
    np.testing.assert_allclose(out, [m + f[0] * d[0], m, m + f[1] * d[2]])
    assert 0.5 < f[0] < 1 and 0.5 < f[1] < 1  # between no shrinkage and 1 / sqrt(B)
    # blocks that agree exactly (all error systematic): no shrinkage at all, whatever gamma
    same = np.tile(u[:1], (4, 1))
    np.testing.assert_allclose(mist._combine(same, taus, 0.65, s), [1.0 - 1.2 * 0.5, 1.0, 1.0 + 1.2 * 1.0])
    # widely scattered medians: the shrinkage reaches 1 / sqrt(B) (here gamma = 0.65 would allow 4^-0.65)
    wide = u.copy()
    wide[:, :] += np.array([[-3.0], [3.0], [-3.0], [3.0]])
    got = mist._combine(wide, taus, 0.65, s)
    np.testing.assert_allclose(got[[0, 2]], wide[:, 1].mean() + d[[0, 2]] / 2)
    # gamma caps the shrinkage: with gamma = 0 there is none
    np.testing.assert_allclose(mist._combine(wide, taus, 0.0, s)[[0, 2]], wide[:, 1].mean() + d[[0, 2]])
    assert mist._combine(np.array([[0.1, 0.2, 0.9]]), taus, 0.5, np.array([3.0, 1, 3.0]))[0] == 0.0  # floored


def test_train_tiny_resumes_and_exports(tmp_path, monkeypatch):
    from pyromi.mist import train as tr

    run = str(tmp_path / "run")
    ov = {"steps": 4, "eval_every": 2, "batch": 4, "val_n": (12, 40), "val_reps": 1}
    tr.train("tiny", run, overrides=ov)
    first = json.loads((tmp_path / "run" / "log.json").read_text())
    tr.train("tiny", run, resume=True, overrides={**ov, "steps": 6})
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert [e["step"] for e in log] == [2, 4, 6] and log[:2] == first
    meta = tr.export(run, "tiny-test", dest=str(tmp_path / "w"), calibration={"levels": [0.9], "scales": [1.0]},
                     shape_q99=np.full((4, 4), 5.0).tolist())
    monkeypatch.setattr(mist, "WEIGHTS_DIR", tmp_path / "w")
    pre = mist.load_pretrained("tiny-test")
    assert pre.sha256 == meta["sha256"] and pre.config.d_max == 4
    rng = np.random.default_rng(0)
    e = mist.estimate(rng.standard_normal((30, 2)), rng.standard_normal((30, 4)), model=pre)
    assert 0 <= e.lower <= e.value and (e.upper is None or e.value <= e.upper)  # untrained: may be open above
    with pytest.raises(ValueError, match="unknown config"):
        tr.train("huge", run)
    # warm start of a wider network from the run's best checkpoint (d_max 4 -> 6), function-preserving
    wide = str(tmp_path / "wide")
    wide_model = {**tr.CONFIGS["tiny"]["model"], "d_max": 6}
    tr.train("tiny", wide, init=str(tmp_path / "run" / "best.pt"),
             overrides={**ov, "steps": 2, "lr": 0.0, "model": wide_model})  # lr 0: weights stay at the init
    src = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    got = torch.load(tmp_path / "wide" / "best.pt", weights_only=True)
    expect = widen_state_dict(src["model"], MISTConfig.from_dict(src["config"]), MISTConfig.from_dict(wide_model))
    assert got["config"]["d_max"] == 6 and got["model"].keys() == expect.keys()
    for k in expect:
        torch.testing.assert_close(got["model"][k], expect[k])


def test_trained_mi_range_and_extrapolation_warning(pre):
    """The weights' recorded training-MI 99th percentile matches an independent draw of the training
    meta-prior; estimates beyond it warn (extrapolation)."""
    rng = np.random.default_rng(12345)
    structures = [fam.parse_family(f)[0] for f in fam.SPLITS[pre.train_split]]
    mis = [fam._draw_dependence(structures[i % len(structures)], *map(int, rng.integers(1, pre.config.d_max + 1, 2)),
                                rng, fam.QUANTILE_MC_DRAWS)[0] for i in range(3000)]
    # the fraction of fresh draws above the recorded 99th percentile (itself from 20000 draws) is
    # ~ 1%: binomial standard deviation sqrt(.01 .99 (1/3000 + 1/20000)) = 0.0020, 4 of them allowed
    above = float(np.mean(np.array(mis) > pre.trained_mi_q99))
    assert "trained_mi_q99" in pre.meta and abs(above - 0.01) < 4 * 0.0020, (above, pre.trained_mi_q99)
    # 16 independent pairs y = x + 0.05 e: I = 16 * 0.5 log(1 + 1/0.05^2) = 47.9 nats, far outside
    x = rng.standard_normal((1000, 16))
    y = x + 0.05 * rng.standard_normal((1000, 16))
    with pytest.warns(UserWarning, match=f"above {pre.trained_mi_q99} nats.*extrapolation"):
        e = mist.estimate(x, y)
    assert e.diagnostics["extrapolation"] and e.diagnostics["trained_mi_q99"] == pre.trained_mi_q99
    assert e.diagnostics["beyond_trained_range"] and e.upper is None  # the range check fires too
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a low-MI estimate does not warn
        e = mist.estimate(x[:, :1], rng.standard_normal((1000, 1)))
    assert not e.diagnostics["extrapolation"]


def test_mutual_information_mist_on_an_implicit_simulator(pre):
    """bound="mist" on a Pyro simulator whose x has no usable density (a Delta of z and a nuisance
    noise site that is neither observed nor latent): x = W z + eps, I(x; z) = 1/2 log|W W^T + s^2 I| / |s^2 I|."""
    import pyro
    import pyro.distributions as dist

    from pyromi import mutual_information

    W = torch.tensor([[1.0, 0.5], [-0.3, 0.8], [0.2, -1.1]])

    def simulator():
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        eps = pyro.sample("eps", dist.Normal(torch.zeros(3), 0.5).to_event(1))
        pyro.sample("x", dist.Delta(z @ W.T + eps, event_dim=1))

    truth = 0.5 * (torch.logdet(W @ W.T + 0.25 * torch.eye(3)) - 3 * math.log(0.25)).item()
    est = mutual_information(simulator, "x", latent="z", bound="mist", num_samples=1000, seed=0)
    assert est.bound == "mist" and est.latent == ("z",) and est.observed == ("x",)
    assert est.lower <= truth <= est.upper, (truth, est)
    again = mutual_information(simulator, "x", latent="z", bound="mist", num_samples=1000, seed=0)
    assert again.value == est.value  # seeded
    assert "interval" in repr(est) and est.upper_se is None


def test_mutual_information_mist_weights_and_calibration(pre):
    """``weights=`` and ``calibration=`` reach MIST from ``mutual_information``: the same joint draws
    (same seed) read by mist-medium under the family-robust rule give exactly what
    ``mist.estimate`` gives on them; bad values fail before the model runs, naming the argument;
    other bounds refuse the keywords."""
    import pyro
    import pyro.distributions as dist

    from pyromi import mutual_information

    calls = []

    def model():
        calls.append(1)
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 0.5).to_event(1))

    a = mutual_information(model, "x", bound="mist", num_samples=300, seed=3)
    b = mutual_information(model, "x", bound="mist", num_samples=300, seed=3, weights="mist-medium",
                           calibration="family_robust")
    assert a.settings["weights"] == mist.DEFAULT_WEIGHTS and b.settings["weights"] == "mist-medium"
    assert b.settings["calibration"] == "family_robust" and a.settings["calibration"] == "pooled"
    joint = mutual_information(model, "x", bound="mist", num_samples=300, seed=3, weights=pre)
    assert joint.value == a.value  # a Pretrained object works as a name does
    assert b.value != a.value
    n0 = len(calls)
    with pytest.raises(PyromiError, match="weights="):
        mutual_information(model, "x", bound="mist", weights=3)
    with pytest.raises(PyromiError, match="mist-nonexistent|not found|no weights"):
        mutual_information(model, "x", bound="mist", weights="mist-nonexistent")
    with pytest.raises(PyromiError, match="calibration must be one of"):
        mutual_information(model, "x", bound="mist", calibration="widest")
    assert len(calls) == n0  # refused before any model call
    with pytest.raises(ValueError, match="calibration="):
        mutual_information(model, "x", bound="iwae", calibration="pooled")
    with pytest.raises(ValueError, match="weights="):
        mutual_information(model, "x", bound="ais", weights="mist-medium")


def test_estimate_records_the_seed_it_used(pre):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 1))
    e = mist.estimate(x, x + rng.standard_normal((200, 1)), model=pre)
    assert e.settings["seed"] == mist.DEFAULT_SEED
    assert mist.estimate(x, x + 1.0 + rng.standard_normal((200, 1)), model=pre, seed=5).settings["seed"] == 5


def test_calibration_rules(pre):
    """The family-robust intervals contain the pooled ones (same median); both rules are recorded
    and the default is the weights' recorded ``default_rule``; a bad rule is an error that lists
    the choices."""
    cal = pre.meta["calibration"]
    assert cal["default_rule"] in ("family_robust", "pooled")
    robust, pooled = np.asarray(cal["scales_family_robust"]), np.asarray(cal["scales"])
    assert robust.shape == pooled.shape and np.all(robust >= pooled - 1e-12)
    rng = np.random.default_rng(11)
    task = fam.draw_task("gauss-lvm-base", 3, 3, rng)
    x, y = task.sample(400, rng)
    e, ep = mist.estimate(x, y, calibration="family_robust"), mist.estimate(x, y, calibration="pooled")
    assert mist.estimate(x, y).settings["calibration"] == cal["default_rule"]
    assert e.settings["calibration"] == "family_robust" and ep.settings["calibration"] == "pooled"
    assert e.value == pytest.approx(ep.value) and e.lower <= ep.lower and e.upper >= ep.upper
    q = mist.quantiles(x, y, [0.05, 0.95], calibration="pooled")
    np.testing.assert_allclose(q, [ep.lower, ep.upper], rtol=1e-6)
    with pytest.raises(PyromiError, match="calibration must be one of.*family_robust.*pooled"):
        mist.estimate(x, y, calibration="robust")


# ----------------------------------------------------------------------------- trust (issue 12)


_RNG_SCRIPT = r"""
import math, warnings
import numpy as np, torch
torch.manual_seed(123); np.random.seed(321)

def states():
    s = [torch.get_rng_state().clone()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        s += [t.clone() for t in torch.cuda.get_rng_state_all()]
    return s, np.random.get_state()

def same(a, b):
    (ta, na), (tb, nb) = a, b
    return (len(ta) == len(tb) and all(torch.equal(p, q) for p, q in zip(ta, tb))
            and na[0] == nb[0] and np.array_equal(na[1], nb[1]) and na[2:] == nb[2:])

import pyromi.mist as mist  # nothing loaded yet: the first call in the process loads the weights
rng = np.random.default_rng(0)
x = rng.standard_normal((300, 2)); y = x + rng.standard_normal((300, 2))
big_x = rng.standard_normal((4100, 1)); big_y = big_x + rng.standard_normal((4100, 1))
calls = {
    "load_pretrained": lambda: mist.load_pretrained(),
    "load_pretrained(mist-small)": lambda: mist.load_pretrained("mist-small"),
    "estimate": lambda: mist.estimate(x, y),
    "estimate(n > n_max, seed=None)": lambda: mist.estimate(big_x, big_y),
    "quantiles": lambda: mist.quantiles(x, y, [0.1, 0.5, 0.9]),
    "quantiles(n > n_max, uncalibrated)": lambda: mist.quantiles(big_x, big_y, [0.2, 0.8], calibrated=False),
    "estimate(range check fires)": lambda: mist.estimate(x, x ** 3),
}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for name, call in calls.items():
        before = states()
        call()
        print(name, "unchanged" if same(before, states()) else "CHANGED")
    import pyro, pyro.distributions as dist
    from pyromi import mutual_information

    def model():
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 0.5).to_event(1))

    before = states()
    mutual_information(model, "x", latent="z", bound="mist", num_samples=200, seed=0)
    print("mutual_information(bound='mist', seed=0)", "unchanged" if same(before, states()) else "CHANGED")
"""


def test_mist_leaves_global_rngs_alone_from_the_first_call():
    """In a fresh process (the first call loads the weights and builds the network), every MIST
    entry point leaves torch's global RNG (and CUDA's, where initialised) and numpy's unchanged."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _RNG_SCRIPT], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 8 and all(line.endswith(" unchanged") for line in lines), out.stdout


def _linear_gaussian(n, sigma, rng):
    """The reference toy's x = W z + sigma e (x in R^20, z in R^5); I = 1/2 log det(I + W^T W / sigma^2)."""
    W = np.random.default_rng(0).normal(size=(20, 5)) / math.sqrt(5)
    z = rng.standard_normal((n, 5))
    x = z @ W.T + sigma * rng.standard_normal((n, 20))
    return x, z, 0.5 * np.linalg.slogdet(np.eye(5) + W.T @ W / sigma**2)[1]


def test_range_check_opens_the_interval_beyond_the_trained_range(pre):
    """x == y, y = x ** 3 (5 columns), a 20-dimensional Gaussian with I = 18.3 nats (MIST alone
    said [11.5, 13.8]) and y = sin(3 x) (non-monotone; MIST alone said [0, 0.08]): each warns, is
    recorded, and the interval is unbounded above, so it contains the truth."""
    rng = np.random.default_rng(20)
    x1 = rng.standard_normal((1000, 1))
    x5 = rng.standard_normal((1000, 5))
    xg, zg, mi_g = _linear_gaussian(1000, 0.045, rng)
    assert mi_g == pytest.approx(18.26, abs=0.01)
    cases = [("x == y", x1, x1.copy(), math.inf, "Gaussian-copula"), ("y = x^3", x5, x5**3, math.inf, "Gaussian-copula"),
             ("Gaussian 20 x 5", xg, zg, mi_g, r"Gaussian-copula"),
             ("sin", x1, np.sin(3 * x1), math.inf, "(KSG|95% quantile)")]
    for name, x, y, truth, why in cases:
        with pytest.warns(mist.MISTRangeWarning, match=f"more dependence than the weights were trained on.*({why}).*upper = None"):
            e = mist.estimate(x, y)
        assert e.diagnostics["beyond_trained_range"] and e.diagnostics["range_check"]["fired"], name
        assert e.upper is None and all(hi is None for _, hi in e.intervals.values()), name
        assert math.isfinite(e.lower) and math.isfinite(e.value) and e.lower <= min(truth, e.value), (name, e)
        assert repr(e).endswith(", inf) (mist, N=1000)"), repr(e)
    with pytest.warns(mist.MISTRangeWarning):
        q = mist.quantiles(x5, x5**3, [0.05, 0.5, 0.95])
    assert q[2] == math.inf and np.isfinite(q[:2]).all()


def test_range_check_silent_on_ordinary_data(pre):
    """Moderate-MI Gaussians (truth well inside the training range of their shape and inside
    MIST's interval): no range warning, finite intervals. Each statistic's lower value sits
    Z = 2.33 standard errors (one-sided 99%) below it, so a chance alarm on such data is rare."""
    rng = np.random.default_rng(21)

    def pairs(n, d, mi):
        rho = math.sqrt(-math.expm1(-2 * mi / d))
        x = rng.standard_normal((n, d))
        return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))

    sets = [pairs(1000, 1, 0.14), pairs(1000, 1, 0.83), pairs(300, 2, 1.5), pairs(1000, 5, 3.0),
            pairs(2000, 10, 6.0), pairs(5000, 1, 0.5)]
    task = fam.draw_task("gauss-lvm-base", 3, 2, rng)
    sets.append(task.sample(800, rng))
    with warnings.catch_warnings():
        warnings.simplefilter("error", mist.MISTRangeWarning)
        for x, y in sets:
            e = mist.estimate(x, y)
            assert not e.diagnostics["beyond_trained_range"] and math.isfinite(e.upper), e.diagnostics["range_check"]


def test_independent_data_interval_contains_zero(pre):
    """Independent x, y: the 90% interval contains 0 in at least 17 of 20 seeds (85%) at n = 1000
    (one block), 5000 (3 blocks) and 20,000 (10 blocks). The older block rule (interval shrunk as
    B^-0.65) excluded 0 in 20 of 20 seeds at n = 5000 and 20,000: the network's median is ~0.01 nats
    in every block (a systematic error, which averaging does not remove)."""
    for n in (1000, 5000, 20000):
        hits = 0
        for s in range(20):
            rng = np.random.default_rng([n, s])
            e = mist.estimate(rng.standard_normal((n, 1)), rng.standard_normal((n, 1)), seed=s)
            hits += e.lower <= 0.0
        assert hits >= 17, (n, hits)


def test_interval_honours_level(pre):
    """MIEstimate.interval(level) of a MIST result returns the interval of that level (as recomputed
    by estimate(level=...)); a level it does not hold is an error saying how to get it."""
    rng = np.random.default_rng(22)
    x, y = fam.draw_task("gauss-2pair-base", 2, 3, rng).sample(600, rng)
    e = mist.estimate(x, y)
    assert e.interval() == (e.lower, e.upper) == e.interval(0.9)
    assert sorted(e.intervals) == [0.5, 0.8, 0.9, 0.95]
    widths = []
    for level in (0.5, 0.8, 0.95):
        ref = mist.estimate(x, y, level=level)
        assert e.interval(level) == pytest.approx((ref.lower, ref.upper), rel=1e-9)
        assert ref.interval() == (ref.lower, ref.upper)
        widths.append(e.interval(level)[1] - e.interval(level)[0])
    assert widths[0] < widths[1] < widths[2]
    with pytest.raises(ValueError, match=r"levels \[0\.5, 0\.8, 0\.9, 0\.95\] only.*mist\.estimate\(x, y, level=0\.99\)"):
        e.interval(0.99)
    assert e.to_bits().interval(0.5) == pytest.approx(tuple(v / math.log(2) for v in e.interval(0.5)))
    odd = mist.estimate(x, y, level=0.87)
    assert sorted(odd.intervals) == [0.5, 0.8, 0.87, 0.9, 0.95] and odd.interval(0.9) == e.interval(0.9)
    assert odd.settings["level_calibrated"] and not mist.estimate(x, y, level=0.98).settings["level_calibrated"]


def test_weights_integrity_errors(tmp_path, monkeypatch):
    """A corrupt weights JSON and a .pt holding a pickled callable (with its hash recorded, i.e. a
    tampered install) raise WeightsError naming the file and saying to reinstall; the payload never
    runs and torch's advice to pass weights_only=False is not passed on."""
    import os

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(tmp_path / "payload-ran"),))

    d = tmp_path / "w"
    d.mkdir()
    src = mist.WEIGHTS_DIR / f"{mist.DEFAULT_WEIGHTS}"
    shutil.copy(f"{src}.pt", d / "badjson.pt")
    (d / "badjson.json").write_text(src.with_suffix(".json").read_text()[:500])
    torch.save({"model": {}, "config": {}, "evil": Payload()}, d / "evil.pt")
    meta = json.loads(src.with_suffix(".json").read_text())
    meta["sha256"] = mist._sha256(d / "evil.pt")
    (d / "evil.json").write_text(json.dumps(meta))
    monkeypatch.setattr(mist, "WEIGHTS_DIR", d)
    with pytest.raises(mist.WeightsError, match=r"badjson\.json is not valid JSON.*Reinstall pyromi"):
        mist.load_pretrained("badjson")
    for load in (lambda: mist.load_pretrained("evil"), lambda: mist.load_checkpoint(d / "evil.pt")):
        with pytest.raises(mist.WeightsError, match=r"evil\.pt is not a valid MIST checkpoint") as info:
            load()
        assert "weights_only=False" not in str(info.value) and info.value.__cause__ is None
    assert "Reinstall pyromi" in str(pytest.raises(mist.WeightsError, mist.load_pretrained, "evil").value)
    assert not (tmp_path / "payload-ran").exists()


def test_train_resume_refuses_a_checkpoint_holding_code(tmp_path):
    """--resume loads last.pt with weights_only=True: a checkpoint holding a pickled callable is a
    WeightsError naming the file, and the callable never runs (resume of a genuine checkpoint is
    tested in test_train_tiny_resumes_and_exports)."""
    import os

    from pyromi.mist import train as tr

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(tmp_path / "payload-ran"),))

    run = tmp_path / "run"
    run.mkdir()
    net = MISTNet(MISTConfig.from_dict(tr.CONFIGS["tiny"]["model"]))
    torch.save({"model": net.state_dict(), "opt": {}, "state": {"step": 0}, "evil": Payload()}, run / "last.pt")
    before = torch.get_rng_state()
    with pytest.raises(mist.WeightsError, match=r"last\.pt is not a valid training checkpoint"):
        tr.train("tiny", str(run), resume=True, overrides={"steps": 1})
    assert not (tmp_path / "payload-ran").exists()
    assert torch.equal(before, torch.get_rng_state())  # training restores the caller's RNG state


def test_inputs_that_could_give_meaningless_numbers(pre):
    """Huge values, int64 near overflow: same (rank-invariant) finite estimate; a bad seed, a level
    past what the quantile head resolves, taus outside it, NaN in quantiles(): clear errors."""
    rng = np.random.default_rng(23)
    x, y = fam.draw_task("gauss-dense-base", 2, 2, rng).sample(400, rng)
    e = mist.estimate(x, y)
    for xs, ys in ((x * 1e300, y), (x, y * 1e-300), (np.round(x * 2**60).astype(np.int64), y)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            e2 = mist.estimate(xs, ys)
        assert e2.value == pytest.approx(e.value, rel=1e-6) and np.isfinite([e2.lower, e2.upper]).all()
    for bad in (-1, 1.5, True, 2**64):
        with pytest.raises(PyromiError, match=r"seed must be None or an int in \[0, 2\*\*63\)"):
            mist.estimate(x, y, seed=bad)
    with pytest.raises(PyromiError, match=r"level=0\.99999 is beyond.*level <= 0\.9998"):
        mist.estimate(x, y, level=0.99999)
    with pytest.raises(PyromiError, match=r"taus must lie in \[1e-4, 1 - 1e-4\]"):
        mist.quantiles(x, y, [1e-6, 0.5])
    with pytest.raises(PyromiError, match=r"x has 1 NaN or infinite"):
        mist.quantiles(np.where(np.arange(800).reshape(400, 2) == 5, np.nan, x), y, [0.5])
