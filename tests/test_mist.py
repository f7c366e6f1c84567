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
    """Closed-form MI (dx != dy) vs the Monte Carlo mean of the pointwise MI of base draws."""
    rng = np.random.default_rng([11, fam.STRUCTURES.index(structure)])
    for dx, dy in ((2, 3), (4, 1)):
        task = fam.draw_task(f"{structure}-base", dx, dy, rng)
        xb, yb = task.sample_base(20000, rng)
        pm = fam.pointwise_mi(task, xb, yb)
        se = pm.std() / math.sqrt(len(pm))
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
        fam.parse_family("gauss-dense-spiral")


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
    n_params = sum(p.numel() for p in pre.net.parameters())
    assert n_params == meta["training"]["parameters"]
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
    assert mist.DEFAULT_WEIGHTS in names and "mist-small" in names
    for name in names:
        meta = json.loads((mist.WEIGHTS_DIR / f"{name}.json").read_text())
        pre = mist.load_pretrained(name)
        assert pre.sha256 == meta["sha256"] and pre.config.to_dict() == meta["config"]
        assert sum(p.numel() for p in pre.net.parameters()) == meta["training"]["parameters"]
        assert 0 < pre.trained_mi_q99 == meta["trained_mi_q99"]


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
        e = mist.estimate(xs, ys)
        hits += e.lower <= t.mi <= e.upper
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
    """Block quantiles (log(1 + I) scale) combine as m = mean medians, deviations * s * B^-gamma."""
    taus = np.array([0.05, 0.5, 0.95])
    u = np.array([[0.5, 1.0, 2.0], [0.7, 1.2, 1.6], [0.3, 0.8, 1.4], [0.6, 1.0, 2.2]])
    out = mist._combine(u, taus, 0.5, np.array([1.2, 1.0, 1.2]))
    m = 1.0
    dev = (u - u[:, 1:2]).mean(0)
    np.testing.assert_allclose(out, [m + 1.2 * 0.5 * dev[0], m, m + 1.2 * 0.5 * dev[2]])
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
    meta = tr.export(run, "tiny-test", dest=str(tmp_path / "w"), calibration={"levels": [0.9], "scales": [1.0]})
    monkeypatch.setattr(mist, "WEIGHTS_DIR", tmp_path / "w")
    pre = mist.load_pretrained("tiny-test")
    assert pre.sha256 == meta["sha256"] and pre.config.d_max == 4
    rng = np.random.default_rng(0)
    e = mist.estimate(rng.standard_normal((30, 2)), rng.standard_normal((30, 4)), model=pre)
    assert 0 <= e.lower <= e.value <= e.upper
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
    train = fam.SPLITS["train"]
    mis = [fam.draw_task(train[i % len(train)], *map(int, rng.integers(1, pre.config.d_max + 1, 2)), rng).mi for i in range(3000)]
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


def test_calibration_rules(pre):
    """The default family-robust intervals contain the pooled ones (same median); both rules are
    recorded; a bad rule is an error that lists the choices."""
    cal = pre.meta["calibration"]
    assert cal["default_rule"] == "family_robust"
    robust, pooled = np.asarray(cal["scales_family_robust"]), np.asarray(cal["scales"])
    assert robust.shape == pooled.shape and np.all(robust >= pooled - 1e-12)
    rng = np.random.default_rng(11)
    task = fam.draw_task("gauss-lvm-base", 3, 3, rng)
    x, y = task.sample(400, rng)
    e, ep = mist.estimate(x, y), mist.estimate(x, y, calibration="pooled")
    assert e.settings["calibration"] == "family_robust" and ep.settings["calibration"] == "pooled"
    assert e.value == pytest.approx(ep.value) and e.lower <= ep.lower and e.upper >= ep.upper
    q = mist.quantiles(x, y, [0.05, 0.95], calibration="pooled")
    np.testing.assert_allclose(q, [ep.lower, ep.upper], rtol=1e-6)
    with pytest.raises(PyromiError, match="calibration must be one of.*family_robust.*pooled"):
        mist.estimate(x, y, calibration="robust")
