"""Funnels: eight schools centred vs non-centred vs ``reparam="auto"``, sandwich width at equal time.

    python benchmarks/bench_funnel.py [--quick] [--budgets 20,60] [--samples 64] [--chains 16]

Eight schools (mu ~ N(0, 5^2), tau ~ HalfCauchy(5), theta_j ~ N(mu, tau^2), y_j ~ N(theta_j,
sigma_j^2), the classic sigma) is run by Multi-Sample AIS in three forms on the **same** N joint
draws (the three forms draw theta = mu + tau * eps from the same random stream, so the data sets
coincide):

* ``centred``: the model as written, a funnel in (tau, theta);
* ``non-centred``: written by hand, eta ~ N(0, 1), theta = mu + tau * eta;
* ``auto``: the centred model with ``mutual_information(..., reparam="auto")``.

For each time budget, T is calibrated per form from a short timed run (seconds per transition) so
that every form gets roughly the same wall time; the table shows the measured time, T, the bounds,
the sandwich width (mean over samples, and the median per-sample width, which the few heavy-tailed
draws with tau* in the hundreds do not dominate) and the fraction of divergent HMC transitions.
The reference column is the per-sample oracle mean ``log p(y_i | theta_i*) - log p(y_i)`` on the
same draws, log p(y) by quadrature (1-D in log tau, mu integrated analytically).

Timings on a shared machine are noisy; the comparison is side by side in one run.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import pyro
import pyro.distributions as dist
import torch

from pyromi import ModelAdapter, mutual_information
from pyromi._rng import seeded
from pyromi.errors import PyromiWarning
from pyromi.model.reparam import auto_reparam

SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
J = 8


def centred(sigma, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", J):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        return pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def non_centred(sigma, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", J):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        theta = pyro.deterministic("theta", mu + tau * eta)
        return pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def log_py(y: torch.Tensor, h: float = 0.02) -> torch.Tensor:
    """log p(y) per row: trapezoid in s = log tau on [-40, 20]; mu ~ N(0, 25) analytically."""
    y = y.double().reshape(-1, J)
    s = torch.arange(-40.0, 20.0 + h / 2, h, dtype=torch.float64)
    tau = s.exp()
    logw = math.log(2 / (5 * math.pi)) - torch.log1p((tau / 5) ** 2) + s + math.log(h)
    v = tau[:, None] ** 2 + SIGMA.double() ** 2
    a = (1 / v).sum(-1)
    logdet = torch.log(v).sum(-1) + torch.log1p(25 * a)
    q = (y[:, None, :] ** 2 / v).sum(-1) - 25 * (y[:, None, :] / v).sum(-1) ** 2 / (1 + 25 * a)
    return torch.logsumexp(-0.5 * (J * math.log(2 * math.pi) + logdet + q) + logw, -1)


FORMS = {
    "centred": (centred, None),
    "non-centred": (non_centred, None),
    "auto": (centred, "auto"),
}


def joints(n: int, seed: int):
    """The same N data sets for the three forms (and theta* for the oracle)."""
    out = {}
    for name, (model, reparam) in FORMS.items():
        m = auto_reparam(model, "obs", model_args=(SIGMA,))[0] if reparam else model
        with seeded(seed):
            out[name] = ModelAdapter(m, "obs", model_args=(SIGMA,)).sample_joint(n)
    j = out["centred"]
    y = j.observed["obs"]
    for name, jn in out.items():
        assert torch.allclose(jn.observed["obs"], y, rtol=1e-4, atol=1e-3), name
    ll = dist.Normal(j.latent["theta"].double(), SIGMA.double()).log_prob(y.double()).sum(-1)
    return out, ll - log_py(y)


def _paired(d: torch.Tensor) -> str:
    d = d.double()
    return f"{float(d.mean()):.3f} ({float(d.std() / math.sqrt(d.numel())):.3f})"


def run(name, joint, T, K, seed):
    model, reparam = FORMS[name]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PyromiWarning)
        est = mutual_information(model, "obs", joint=joint, model_args=(SIGMA,), bound="ais",
                                 num_particles=K, num_steps=T, seed=seed, progress=False,
                                 reparam=reparam)
    return est, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--budgets", default=None, help="seconds per run, comma-separated (default 20,60)")
    p.add_argument("--samples", type=int, default=None, help="N joint draws (default 64)")
    p.add_argument("--chains", type=int, default=16, help="K chains per sample")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    n = args.samples or (16 if args.quick else 64)
    budgets = [float(b) for b in (args.budgets or ("3,6" if args.quick else "20,60")).split(",")]
    K = args.chains
    data, oracle = joints(n, args.seed)
    print(f"eight schools, N = {n} data sets, K = {K} chains; oracle I on these draws = "
          f"{float(oracle.mean()):.3f} nats (s.e. {float(oracle.std() / math.sqrt(n)):.3f})")

    # calibrate: seconds per transition of each form, from one short timed run (pilot included)
    T0 = 40 if args.quick else 100
    per_step = {}
    for name in FORMS:
        _, sec = run(name, data[name], T0, K, args.seed + 1)
        per_step[name] = sec / T0
    print("calibration (s per transition, pilot included): "
          + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in per_step.items()))

    header = (f"{'budget':>7} {'form':>12} {'T':>5} {'time s':>7} {'lower':>7} {'upper':>8} "
              f"{'width':>7} {'med w':>6} {'lo-or (se)':>14} {'up-or (se)':>14} {'div %':>6}")
    print(header)
    print("-" * len(header))
    for budget in budgets:
        for name in FORMS:
            T = max(2, int(budget / per_step[name]))
            est, sec = run(name, data[name], T, K, args.seed + 2)
            lo, up = est.terms["lower"], est.terms["upper"]
            print(f"{budget:>7.0f} {name:>12} {T:>5d} {sec:>7.1f} {est.lower:>7.3f} {est.upper:>8.3f} "
                  f"{est.upper - est.lower:>7.3f} {float((up - lo).median()):>6.3f} "
                  f"{_paired(lo - oracle):>14} {_paired(up - oracle):>14} "
                  f"{100 * est.diagnostics['divergence_fraction']:>6.2f}")
    print("width = upper - lower (mean over samples); med w = median per-sample width; lo-or, up-or ="
          " mean (bound - oracle) per sample (a valid lower bound has lo-or <= 0 and an upper bound"
          " up-or >= 0, within 3 paired s.e.); div % = divergent HMC transitions.")


if __name__ == "__main__":
    main()
