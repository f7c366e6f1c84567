"""torch.distributed scale-out, run for real: two gloo processes on loopback (``torchrun
--standalone``) call pyromi as a user's script would (``tests/distributed_worker.py``); the tests
compare what each rank returned with the other rank, with each rank's own share and with a
single-process run of the same calls (agreement within Monte Carlo error) and the closed form."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from pyromi import distributed

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import distributed_worker as worker  # noqa: E402

TRUTH = 0.5 * float(torch.logdet(torch.eye(2) + worker.W.T @ worker.W / worker.NOISE**2))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    if shutil.which("torchrun") is None and not _has_run_module():
        pytest.skip("torch.distributed.run is not available")
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    out = tmp_path_factory.mktemp("ranks")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.join(HERE, "distributed_worker.py"), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def _has_run_module() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch.distributed.run") is not None


CALLS = ["ais", "ais_again", "iwae", "iwae_seed_none", "infonce", "mist", "giwae_eval", "dataplate"]


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


@pytest.mark.parametrize("call", CALLS)
def test_every_rank_returns_the_identical_estimate(ranks, call):
    a, b = ranks[0][call], ranks[1][call]
    assert _same(a, b), call  # bounds, standard errors, terms, diagnostics and settings
    for v in a["terms"].values():
        assert v.shape == (a["num_samples"],) and bool(torch.isfinite(v).all())


def test_every_sample_once(ranks):
    """N = 37 over 2 ranks: shares 19 + 18, in rank order; the merged terms are each rank's own
    single-process share, unchanged (nothing dropped, nothing counted twice)."""
    est = ranks[0]["iwae"]
    assert est["num_samples"] == 37
    assert est["settings"]["distributed"]["samples_per_rank"] == [19, 18]
    assert distributed.shares(37, 2) == [(0, 19), (19, 37)]
    for r in (0, 1):
        own = ranks[r]["iwae_own_share"]
        for side in ("lower", "upper"):
            assert torch.equal(est["terms"][side][own["lo"]:own["hi"]], own["terms"][side])
    assert ranks[0]["mist"]["settings"]["distributed"]["samples_per_rank"] == [151, 150]
    assert ranks[0]["log_marginal"]["lower"].shape == (11,)
    assert ranks[0]["log_marginal"]["diagnostics"]["distributed"]["samples_per_rank"] == [6, 5]


def test_data_plate_rows_follow_the_global_sample_index(ranks):
    """Sample i uses covariate row i mod 4 in one process; over two ranks too (rows 0, 1 carry ~0
    nats, rows 2, 3 about 2.6: per row 1/2 log(1 + 2 c^2 / 0.09))."""
    up = ranks[0]["dataplate"]["terms"]["upper"]
    truth = [0.5 * math.log1p(2 * c**2 / 0.09) for c in worker.COVARIATE.squeeze(-1).tolist()]
    assert up.shape == (4,)
    for u, t in zip(up.tolist(), truth):
        assert abs(u - t) < 0.5, (up, truth)


def test_deterministic_for_a_seed_and_the_seed_recorded(ranks):
    a = ranks[0]
    again = {**a["ais_again"], "diagnostics": {**a["ais_again"]["diagnostics"], "seconds": a["ais"]["diagnostics"]["seconds"]}}
    assert _same(a["ais"], again)  # all but the time taken
    assert a["ais"]["settings"]["seed"] == 1 and a["ais"]["settings"]["distributed"]["seed"] == 1
    assert a["iwae_seed_none"]["settings"]["seed"] is None  # the broadcast seed is recorded instead
    assert isinstance(a["iwae_seed_none"]["settings"]["distributed"]["seed"], int)
    assert not a["ais"]["settings"]["distributed"]["per_rank_keys"]  # every diagnostic merged


def test_agrees_with_one_process_and_the_truth(ranks):
    """Two ranks vs one process on the same calls: the bounds differ only by Monte Carlo error
    (4 combined standard errors), the sandwiches hold the closed-form MI within their errors."""
    from pyromi import mutual_information

    kw = dict(num_samples=37, progress=False)
    single = {
        "ais": mutual_information(worker.model, "x", bound="ais", num_particles=4, num_steps=30, seed=1, **kw),
        "iwae": mutual_information(worker.model, "x", bound="iwae", num_particles=64, seed=2, **kw),
        "infonce": mutual_information(worker.model, "x", bound="infonce", num_particles=16, train_steps=40,
                                      batch_size=64, seed=4, **kw),
    }
    for name, one in single.items():
        two = ranks[0][name]
        for side in ("lower", "upper"):
            if getattr(one, side) is None:
                continue
            tol = 4 * math.hypot(getattr(one, side + "_se"), two[side + "_se"])
            assert abs(getattr(one, side) - two[side]) <= tol, (name, side, getattr(one, side), two[side], tol)
        assert two["lower"] - 4 * two["lower_se"] <= TRUTH, name
        if two["upper"] is not None:
            assert two["upper"] + 4 * two["upper_se"] >= TRUTH, name
    mist = ranks[0]["mist"]
    assert mist["lower"] <= TRUTH <= mist["upper"], (mist, TRUTH)


def test_data_parallel_training_keeps_ranks_identical(ranks):
    """GIWAE trained on both ranks (own batches, averaged gradients): identical parameters and the
    same history (the global batch's objective) on both."""
    a, b = ranks
    assert len(a["giwae_params"]) > 0
    assert all(torch.equal(p, q) for p, q in zip(a["giwae_params"], b["giwae_params"]))
    assert a["giwae_history"] == b["giwae_history"] and len(a["giwae_history"]) == 25


def test_audit_and_mist_training(ranks):
    """audit(): the same report on both ranks (one broadcast seed). MIST's set-network training:
    both ranks end with the same validation metrics (the same weights); only rank 0 wrote files."""
    a, b = ranks
    assert _same(a["audit"], b["audit"]) and isinstance(a["audit"]["seed"], int)
    assert a["audit"]["mi"]["num_samples"] == 10
    assert a["mist_train_last"] == b["mist_train_last"] and a["mist_train_last"]["step"] == 2
    assert {"last.pt", "log.json", "config.json"} <= set(a["mist_train_files"])


def test_an_error_on_one_rank_stops_every_rank(ranks):
    """Rank 1's rows lie where p(x | z) = 0: it raises its DensityError, rank 0 a PyromiError that
    quotes it (instead of waiting forever in the gather)."""
    assert ranks[1]["error"].startswith("DensityError: log_marginal")
    assert ranks[0]["error"].startswith("PyromiError: rank 1 of 2 failed") and "DensityError" in ranks[0]["error"]


def test_ranks_that_disagree_or_fail_stop_together(ranks):
    """Different data on each rank is refused on both (pyromi shards itself); a model that fails on
    rank 1 only, mid-training or in MIST's simulation, raises on both ranks (no hang, no mixed-up
    collectives): the next call returns the same estimate on both."""
    for r in (0, 1):
        assert ranks[r]["different_data"].startswith("PyromiError: log_marginal under torch.distributed: "
                                                     "the ranks passed different data=")
    assert "boom on rank 1" in ranks[1]["train_failure"] and "boom on rank 1" in ranks[1]["mist_failure"]
    for name in ("train_failure", "mist_failure"):
        assert ranks[0][name].startswith("PyromiError: rank 1 of 2 failed") and "boom on rank 1" in ranks[0][name]
    assert _same(ranks[0]["after_failures"], ranks[1]["after_failures"])
    audit_flags = ranks[0]["audit"]["flags"]
    assert not any("inf%" in f for f in audit_flags), audit_flags  # the merged sandwich's width is known
    assert isinstance(ranks[0]["audit"]["mi"]["diagnostics"]["relative_width"], float)


def test_shares_cover_every_item_once():
    for n in range(1, 40):
        for w in range(1, 6):
            s = distributed.shares(n, w)
            assert s[0][0] == 0 and s[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(s, s[1:]))
            assert max(b - a for a, b in s) - min(b - a for a, b in s) <= 1


def test_single_process_is_untouched():
    """Without a process group nothing is sharded (and no collective is called)."""
    assert distributed.current() is None


def test_merge_rules_without_a_process_group():
    """merge_estimates on two hand-made shares: terms concatenated in rank order, bounds and
    standard errors recomputed from them, per-sample tables joined on their sample axis, summaries
    recomputed, counts summed, times maxed; a table too large to gather stays on its rank and its
    summary is the sample-weighted mean of the ranks'."""
    from pyromi.ops import standard_error
    from pyromi.result import MIEstimate

    ctx = distributed.Context(rank=0, world_size=2, backend="gloo", local_rank=0)
    gen = torch.Generator().manual_seed(0)

    def part(n, k=3, t=4, trim=None):
        lo = torch.randn(n, generator=gen, dtype=torch.float64)
        acc = torch.rand(t - 1, n, generator=gen, dtype=torch.float64)
        diag = {"log_weights": torch.randn(k, n, generator=gen), "acceptance": acc,
                "acceptance_mean": float(acc.mean()), "ess_fraction": torch.rand(n, generator=gen),
                "divergences": 2, "seconds": float(n), "betas": torch.linspace(0, 1, t + 1)}
        est = MIEstimate.from_terms("ais", lo, lo + 0.5, num_particles=k, settings={"seed": 9},
                                    diagnostics=diag, observed=("x",), latent=("z",))
        if trim is not None:
            est.settings["_not_gathered"] = distributed.trim_for_gather(est.diagnostics, n, trim)
        return est

    a, b = part(5), part(4)
    m = distributed.merge_estimates([a, b], ctx, seed=3, run_seed=3)
    lo = torch.cat([a.terms["lower"], b.terms["lower"]])
    assert m.num_samples == 9 and torch.equal(m.terms["lower"], lo)
    assert m.lower == float(lo.mean()) and m.lower_se == standard_error(lo)
    assert m.diagnostics["log_weights"].shape == (3, 9) and m.diagnostics["acceptance"].shape == (3, 9)
    assert m.diagnostics["acceptance_mean"] == float(m.diagnostics["acceptance"].double().mean())
    assert m.diagnostics["divergences"] == 4 and m.diagnostics["seconds"] == 5.0
    assert m.diagnostics["betas"].shape == (2, 5)  # one schedule per block, as for max_batch blocks
    assert m.settings["seed"] == 3 and m.settings["distributed"]["samples_per_rank"] == [5, 4]
    old = distributed.MAX_GATHER_ELEMENTS
    try:
        distributed.MAX_GATHER_ELEMENTS = 20  # (3, 9) and (3, 9) tables pass it
        a, b = part(5, trim=9), part(4, trim=9)
    finally:
        distributed.MAX_GATHER_ELEMENTS = old
    m = distributed.merge_estimates([a, b], ctx, seed=3, run_seed=3)
    assert m.diagnostics["log_weights"] is None and m.diagnostics["acceptance"] is None
    assert m.settings["distributed"]["not_gathered"] == ["log_weights", "acceptance"]
    want = (a.diagnostics["acceptance_mean"] * 5 + b.diagnostics["acceptance_mean"] * 4) / 9
    assert abs(m.diagnostics["acceptance_mean"] - want) < 1e-12
    assert not m.settings["distributed"]["per_rank_keys"]
