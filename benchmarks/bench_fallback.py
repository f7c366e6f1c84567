"""The sequential fallback's cost: one model written to broadcast, run batched and pair by pair.

    python benchmarks/bench_fallback.py [--quick]

The model (a Bayesian linear regression, the joint density of Pyro's tutorial model) admits every
path: ``vectorize=True`` (batched passes) and ``vectorize=False`` (the fallback a model that cannot
be batched gets, e.g. ``PyroModule[nn.Linear]`` with sampled weights: its density passes go through
``torch.func.vmap`` where the model allows it, else a Python loop over pairs; the loop-only row
forces the loop). Same seeds, same sizes; the wall-time ratios are printed side by side, with the
sandwiches (they agree in distribution).
"""

from __future__ import annotations

import argparse
import time
import warnings

import pyro
import pyro.distributions as dist
import torch

from pyromi import mutual_information


def regression(x, y=None):
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[-1]]).to_event(1))
    b = pyro.sample("b", dist.Normal(0.0, 10.0))
    sigma = pyro.sample("sigma", dist.Uniform(0.0, 10.0))
    mean = (w * x).sum(-1) + b  # under pyromi's plates w is (..., 1, p): the 1 is the data dim
    with pyro.plate("data", x.shape[0]):
        pyro.sample("obs", dist.Normal(mean, sigma), obs=y)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    runs = [("iwae", dict(num_samples=16, num_particles=64 if args.quick else 256)),
            ("ais", dict(num_samples=4, num_particles=4, num_steps=20 if args.quick else 100,
                         num_leapfrog=5, progress=False))]
    print(f"{'bound':6s} {'path':10s} {'seconds':>9s} {'lower':>8s} {'upper':>8s}")
    from pyromi.model import sequential

    vmapped = sequential.SequentialRunner._score_vmap

    def loop_only(*a, **k):
        raise RuntimeError("loop only")

    for bound, kw in runs:
        times = {}
        for path, vec in (("batched", True), ("sequential", False), ("loop only", False)):
            sequential.SequentialRunner._score_vmap = loop_only if path == "loop only" else vmapped
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t0 = time.perf_counter()
                    est = mutual_information(regression, "obs", model_args=(x,), bound=bound,
                                             seed=0, vectorize=vec, **kw)
                    times[path] = time.perf_counter() - t0
            finally:
                sequential.SequentialRunner._score_vmap = vmapped
            print(f"{bound:6s} {path:10s} {times[path]:9.2f} {est.lower:8.3f} {est.upper:8.3f}")
        print(f"{bound:6s} time / batched: sequential (vmap) {times['sequential'] / times['batched']:.1f}x, "
              f"loop only {times['loop only'] / times['batched']:.0f}x")


if __name__ == "__main__":
    main()
