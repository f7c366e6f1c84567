"""AIS kernel tuning: divergences, sandwich width and time, old tuning vs new, side by side.

    python benchmarks/bench_ais_tuning.py [--quick] [--seeds 0,1,2] [--only lr,demo,logistic,lognormal]

The pilot run (``pyromi.samplers.ais.pilot_run``) tunes one step size and diagonal inverse mass per
(level, sample) and freezes them for the final run. **old**: acceptance-rate targeting only
(``stability_fraction=None, step_jitter=0`` in the pilot and ``step_jitter=0`` in ``run_ais``: exactly
the code before the change). **new** (the defaults): each level's step size capped at 0.8 of the
leapfrog stability limit ``2 / sqrt(lambda_max)`` (``lambda_max`` measured per chain by two
warm-started Lanczos steps on finite-difference Hessian-vector products, riding along the pilot's
leapfrog passes, and by the secant curvature along the pilot trajectories), and the step size of
every transition drawn from ``[0.4 eps, eps]``.

Models (all with the prior as the start of the path):

* ``lr``: the local regression of the issue, z_i ~ N(0, 1), y_i ~ N(c_i z_i, 1), c = (0.5, 1, 2, 4)
  under a data plate (one scalar latent per sample): N = 64, K = 8, T = 100.
* ``demo``: the linear-Gaussian toy of ``pyromi demo`` (z in R^5, x in R^20, sigma = 0.1,
  I = 14.275 nats), as the demo runs it: N = 256, K = 8, T = 300.
* ``logistic``: z ~ N(0, I_3), y_j ~ Bernoulli(sigmoid(X_j . z)), 30 fixed covariate rows with
  scales (0.5, 2, 5): non-Gaussian, N = 64, K = 8, T = 100.
* ``lognormal``: s ~ LogNormal(0, 1), x_j ~ N(0, s^2), j = 1..10 (the unconstrained latent is
  log s): N = 64, K = 8, T = 100.

For each model and seed it prints the divergence fraction (of all (K + 1) N (T - 1) transitions),
the sandwich (lower, upper, width = upper - lower), the BDMC gap (``diagnostics["bdmc_gap_mean"]``:
mean of log w_backward - mean_k log w_forward, the single-chain sandwich width; a less noisy
measure of how well the chains anneal than the K-chain width), the wall time and the CPU time of this
process (pilot + final run, one torch thread), and the mean acceptance, old and new side by side,
then the means over the seeds. Wall times on a shared machine are noisy; the CPU seconds are the
cost figure. ``--old-steps-factor 1.1`` gives the old tuning 10% more transitions, for a comparison
at (at least) equal cost: the new tuning's pilot does a little more work per level.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import time
import warnings

import pyro
import pyro.distributions as dist
import torch

import pyromi.estimators.ais as est_ais
from pyromi import mutual_information
from pyromi.models import LinearGaussian
from pyromi.samplers.ais import pilot_run, run_ais


@contextlib.contextmanager
def tuning(mode: str):
    """``"old"``: pilot without the stability cap; ``"new"``: the library default."""
    if mode == "new":
        yield
        return
    orig = est_ais.pilot_run, est_ais.run_ais
    est_ais.pilot_run = functools.partial(pilot_run, stability_fraction=None, step_jitter=0.0)
    est_ais.run_ais = functools.partial(run_ais, step_jitter=0.0)
    try:
        yield
    finally:
        est_ais.pilot_run, est_ais.run_ais = orig


def local_regression(c):
    with pyro.plate("data", c.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(c * z, 1.0))


_X = torch.randn(30, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([0.5, 2.0, 5.0])


def logistic():
    z = pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).to_event(1))
    pyro.sample("y", dist.Bernoulli(logits=z @ _X.T).to_event(1))


def lognormal_scale():
    s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
    pyro.sample("x", dist.Normal(0.0, s.unsqueeze(-1)).expand(s.shape + (10,)).to_event(1))


def cases(quick: bool):
    c = torch.tensor([0.5, 1.0, 2.0, 4.0])
    lg = LinearGaussian.toy()
    n_demo = 64 if quick else 256
    lr_truth = sum(0.5 * math.log1p(ci**2) for ci in c.tolist()) / len(c)  # per data point
    return {
        "lr": dict(model=local_regression, observed="y", model_args=(c,), num_samples=64,
                   num_particles=8, num_steps=100, truth=lr_truth),
        "demo": dict(model=lg.model, observed="x", num_samples=n_demo, num_particles=8,
                     num_steps=300, truth=lg.mutual_information()),
        "logistic": dict(model=logistic, observed="y", num_samples=64, num_particles=8,
                         num_steps=100, truth=None),
        "lognormal": dict(model=lognormal_scale, observed="x", num_samples=64, num_particles=8,
                          num_steps=100, truth=None),
    }


def run_one(case: dict, seed: int, mode: str, steps_factor: float = 1.0) -> dict:
    kw = {k: v for k, v in case.items() if k != "truth"}
    model, observed = kw.pop("model"), kw.pop("observed")
    kw["num_steps"] = int(round(kw["num_steps"] * steps_factor))
    with tuning(mode), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t, c = time.perf_counter(), time.process_time()
        est = mutual_information(model, observed, bound="ais", seed=seed, progress=False, **kw)
        sec, cpu = time.perf_counter() - t, time.process_time() - c
    d = est.diagnostics
    return dict(div=d["divergence_fraction"], lower=est.lower, upper=est.upper,
                width=est.upper - est.lower, gap=d["bdmc_gap_mean"], sec=sec, cpu=cpu,
                acc=d["acceptance_mean"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one seed, a smaller demo batch")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--only", default="lr,demo,logistic,lognormal")
    ap.add_argument("--old-steps-factor", type=float, default=1.0,
                    help="give the old tuning this many times the transitions T (e.g. 1.1 for a "
                         "comparison at equal or greater cost than the new tuning's)")
    args = ap.parse_args()
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)  # CPU seconds comparable on a shared machine
    all_cases = cases(args.quick)
    print(f"{'model':10s} {'seed':>4s} | {'div old':>8s} {'div new':>8s} | {'lower old':>9s} "
          f"{'lower new':>9s} | {'upper old':>9s} {'upper new':>9s} | {'width old':>9s} "
          f"{'width new':>9s} | {'gap old':>8s} {'gap new':>8s} | {'s old':>6s} {'s new':>6s} | "
          f"{'cpu old':>7s} {'cpu new':>7s} | {'acc old':>7s} {'acc new':>7s}")
    for name in args.only.split(","):
        case = all_cases[name]
        rows = []
        for seed in seeds:
            r = {"old": run_one(case, seed, "old", args.old_steps_factor), "new": run_one(case, seed, "new")}
            rows.append(r)
            o, n = r["old"], r["new"]
            print(f"{name:10s} {seed:4d} | {100 * o['div']:7.2f}% {100 * n['div']:7.2f}% | "
                  f"{o['lower']:9.4f} {n['lower']:9.4f} | {o['upper']:9.4f} {n['upper']:9.4f} | "
                  f"{o['width']:9.4f} {n['width']:9.4f} | {o['gap']:8.3f} {n['gap']:8.3f} | "
                  f"{o['sec']:6.2f} {n['sec']:6.2f} | {o['cpu']:7.2f} {n['cpu']:7.2f} | "
                  f"{o['acc']:7.3f} {n['acc']:7.3f}", flush=True)
        mean = {m: {k: sum(r[m][k] for r in rows) / len(rows) for k in rows[0][m]} for m in ("old", "new")}
        o, n = mean["old"], mean["new"]
        truth = case["truth"]
        t = f"   (closed form {truth:.4f})" if truth is not None else ""
        print(f"{name:10s} mean | {100 * o['div']:7.2f}% {100 * n['div']:7.2f}% | "
              f"{o['lower']:9.4f} {n['lower']:9.4f} | {o['upper']:9.4f} {n['upper']:9.4f} | "
              f"{o['width']:9.4f} {n['width']:9.4f} | {o['gap']:8.3f} {n['gap']:8.3f} | "
              f"{o['sec']:6.2f} {n['sec']:6.2f} | {o['cpu']:7.2f} {n['cpu']:7.2f} | "
              f"{o['acc']:7.3f} {n['acc']:7.3f}{t}", flush=True)


if __name__ == "__main__":
    main()
