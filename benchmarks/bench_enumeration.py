"""The cost of summing discrete latents out by enumeration, against the same model marginalised by
hand.

    python benchmarks/bench_enumeration.py [--quick]

Model, in a plate of 8 independent coordinates: k ~ Categorical(w) (marked for parallel
enumeration), z | k ~ N(mu_k, s_k^2), x | z ~ N(z, sigma^2). Since x is independent of
k given z, I(x; {k, z}) = I(x; z), which the hand-marginalised model (z ~ MixtureSameFamily) also
measures: same quantity, same sizes, same seeds; the ratio of wall times is the enumeration overhead.
"""

from __future__ import annotations

import argparse
import time
import warnings

import pyro
import pyro.distributions as dist
import torch

from pyromi import mutual_information

W = torch.tensor([0.5, 0.3, 0.2])
MU = torch.tensor([-2.0, 0.0, 3.0])
S = torch.tensor([0.5, 1.0, 0.7])
SIGMA = 0.5
D = 8


def enumerated():
    with pyro.plate("coords", D):
        k = pyro.sample("k", dist.Categorical(W), infer={"enumerate": "parallel"})
        z = pyro.sample("z", dist.Normal(MU[k], S[k]))
        pyro.sample("x", dist.Normal(z, SIGMA))


def marginalised():
    with pyro.plate("coords", D):
        z = pyro.sample("z", dist.MixtureSameFamily(dist.Categorical(W), dist.Normal(MU, S)))
        pyro.sample("x", dist.Normal(z, SIGMA))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = [("iwae", dict(num_samples=64, num_particles=200 if args.quick else 1000)),
            ("ais", dict(num_samples=32, num_particles=8, num_steps=50 if args.quick else 300,
                         progress=False))]
    print(f"{'bound':6s} {'model':14s} {'seconds':>9s} {'lower':>8s} {'upper':>8s}")
    for bound, kw in runs:
        times = {}
        for name, model in (("marginalised", marginalised), ("enumerated", enumerated)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                est = mutual_information(model, "x", bound=bound, seed=0, **kw)
                times[name] = time.perf_counter() - t0
            print(f"{bound:6s} {name:14s} {times[name]:9.2f} {est.lower:8.3f} {est.upper:8.3f}")
        print(f"{bound:6s} enumerated / marginalised time: {times['enumerated'] / times['marginalised']:.1f}x")


if __name__ == "__main__":
    main()
