"""Multi-Sample AIS benchmarks: overhead, speed-up over Pyro's per-chain HMC, tightness at high MI.

    python benchmarks/bench_ais.py [--quick] [--device cpu|cuda] [--only overhead,pyro,tightness]

1. Overhead ratio: pyromi AIS wall time (pilot + final run) divided by the time of the same number
   of batched log-density-and-gradient evaluations, at the same shapes, of the same model written
   as a plain torch function. A small model (the linear-Gaussian toy) and a VAE-sized one (MLP
   decoder 10 -> 512 -> 784, Gaussian likelihood). Goals: <= 2 (small), <= 1.3 (VAE-sized).
2. Speed-up over Pyro's own HMC kernel driven chain by chain for the same work (per-transition cost
   measured on a subset of chains and temperatures, then scaled to the full work). Goal >= 100x.
3. Tightness: relative sandwich width (upper - lower) / truth on a linear-Gaussian with MI ~ 100
   nats (z in R^14, x in R^40, sigma = 1e-3), from the prior and from a trained AmortizedNormal.

Timings on a shared machine are noisy; ratios measured side by side in one run are the figures.
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyromi import AmortizedNormal, ModelAdapter, fit_proposal, mutual_information
from pyromi._rng import seeded
from pyromi.estimators.ais import default_pilot_steps
from pyromi.models import LinearGaussian
from pyromi.samplers.hmc import DensityTerms, tempered_state


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class VAEDecoder:
    """z ~ N(0, I_10); x ~ N(MLP(z), 0.1^2 I_784) with a 10 -> 512 -> 784 tanh MLP (random weights)."""

    def __init__(self, device):
        g = torch.Generator().manual_seed(0)
        self.W1 = (torch.randn(512, 10, generator=g) / math.sqrt(10)).to(device)
        self.b1 = torch.zeros(512, device=device)
        self.W2 = (torch.randn(784, 512, generator=g) / math.sqrt(512)).to(device)
        self.b2 = torch.zeros(784, device=device)
        self.device = device

    def mean(self, z):
        return torch.tanh(z @ self.W1.T + self.b1) @ self.W2.T + self.b2

    def model(self):
        z = pyro.sample("z", dist.Normal(torch.zeros(10, device=self.device), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(self.mean(z), 0.1).to_event(1))

    def plain_terms(self, x):
        def f(u):
            base = dist.Normal(0.0, 1.0).log_prob(u).sum(-1)
            tilt = torch.distributions.Normal(self.mean(u), 0.1).log_prob(x).sum(-1)
            return DensityTerms(base, tilt)

        return f


def linear_plain_terms(lg, x):
    def f(u):
        base = torch.distributions.Normal(0.0, 1.0).log_prob(u).sum(-1)
        tilt = torch.distributions.Normal(u @ lg.W.T, lg.sigma).log_prob(x).sum(-1)
        return DensityTerms(base, tilt)

    return f


def time_plain(f, shape, n_evals, device, dtype):
    """Time ``n_evals`` value-and-gradient evaluations of ``f`` (argument validation off, as in pyromi)."""
    torch.distributions.Distribution.set_default_validate_args(False)
    u = torch.randn(shape, device=device, dtype=dtype)
    for _ in range(3):
        tempered_state(u, f)
    sync(device)
    t = time.perf_counter()
    for _ in range(n_evals):
        tempered_state(u, f)
    sync(device)
    return time.perf_counter() - t


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def overhead(name, model, plain_for_x, N, K, T, L, device):
    adapter = ModelAdapter(model, "x")
    with seeded(0, adapter.device):
        joint = adapter.sample_joint(N)
    D = adapter.latent_dim
    pilot_chains, G = max(K, 16), default_pilot_steps(T)
    sync(device)
    t = time.perf_counter()
    est = mutual_information(model, "x", bound="ais", joint=joint, num_particles=K, num_steps=T,
                             num_leapfrog=L, seed=1, progress=False)
    sync(device)
    t_pm = time.perf_counter() - t
    f = plain_for_x(joint.observed["x"])
    # the same evaluations: pilot ((G - 1) L + 1 at pilot_chains) and final ((T - 1) L + 1 at K + 1)
    t_plain = time_plain(f, (pilot_chains, N, D), (G - 1) * L + 1, device, adapter.dtype)
    t_plain += time_plain(f, (K + 1, N, D), (T - 1) * L + 1, device, adapter.dtype)
    print(f"  {name:28s} pyromi {t_pm:7.2f} s   plain torch {t_plain:7.2f} s   ratio {t_pm / t_plain:5.2f}"
          f"   ({est})")
    return t_pm / t_plain


def pyro_kernel_speedup(lg, N, K, T, L, device):
    """Pyro HMC per chain: set the tempered potential, clear the cache, one transition each."""
    from pyro.infer.mcmc import HMC

    adapter = ModelAdapter(lg.model, "x")
    with seeded(0, adapter.device):
        joint = adapter.sample_joint(N)
    t = time.perf_counter()
    mutual_information(lg.model, "x", bound="ais", joint=joint, num_particles=K, num_steps=T,
                       num_leapfrog=L, seed=1, progress=False)
    t_pm = time.perf_counter() - t
    x = joint.observed["x"][0]

    def make_potential(beta):
        def potential(params):
            z = params["z"]
            lp = dist.Normal(0.0, 1.0).log_prob(z).sum()
            ll = dist.Normal(z @ lg.W.T, lg.sigma).log_prob(x).sum()
            return -(lp + beta * ll)

        return potential

    kernel = HMC(potential_fn=make_potential(0.0), step_size=0.1, num_steps=L,
                 adapt_step_size=False, adapt_mass_matrix=False)
    kernel.initial_params = {"z": torch.zeros(lg.dz)}
    kernel.setup(warmup_steps=0)
    params = {"z": torch.zeros(lg.dz)}
    n_trans = 50
    t = time.perf_counter()
    with pyro.poutine.block():
        for i in range(n_trans):
            kernel.potential_fn = make_potential((i + 1) / n_trans)
            kernel.clear_cache()
            params = kernel.sample(params)
    per_transition = (time.perf_counter() - t) / n_trans
    # the same work: pilot + final transitions for every chain of every sample
    transitions = N * ((K + 1) * (T - 1) + max(K, 16) * (default_pilot_steps(T) - 1))
    t_pyro = per_transition * transitions
    print(f"  pyromi {t_pm:.2f} s; Pyro HMC {per_transition * 1e3:.2f} ms per transition per chain x "
          f"{transitions} transitions = {t_pyro:.0f} s (extrapolated); speed-up {t_pyro / t_pm:.0f}x")
    return t_pyro / t_pm


def tightness(device, steps_prior, steps_guide, train_steps):
    W = torch.tensor(np.random.default_rng(0).normal(size=(40, 14)) / math.sqrt(14),
                     dtype=torch.float32, device=device)
    lg = LinearGaussian(W, 1e-3)
    truth = lg.mutual_information()
    adapter = ModelAdapter(lg.model, "x")
    with seeded(0, adapter.device):
        joint = adapter.sample_joint(32)
    oracle = float(lg.oracle(joint.observed["x"], joint.latent["z"]).mean())
    print(f"  truth {truth:.3f} nats, batch oracle {oracle:.3f} (N=32, K=8, L=10, adaptive schedule)")
    for T in steps_prior:
        t = time.perf_counter()
        est = mutual_information(lg.model, "x", bound="ais", joint=joint, num_particles=8,
                                 num_steps=T, seed=1, progress=False)
        dt = time.perf_counter() - t
        print(f"  prior start  T={T:5d}: [{est.lower:8.3f}, {est.upper:8.3f}]  width/truth "
              f"{(est.upper - est.lower) / truth:7.4f}  {dt:6.1f} s")
    t = time.perf_counter()
    q = AmortizedNormal(lg.model, observed="x", seed=0)
    fit_proposal(q, train_steps, optim=pyro.optim.Adam({"lr": 1e-3}), batch_size=512, seed=0)
    t_fit = time.perf_counter() - t
    for T in steps_guide:
        t = time.perf_counter()
        est = mutual_information(lg.model, "x", bound="ais", joint=joint, start=q, num_particles=8,
                                 num_steps=T, seed=1, progress=False)
        dt = time.perf_counter() - t
        print(f"  guide start  T={T:5d}: [{est.lower:8.3f}, {est.upper:8.3f}]  width/truth "
              f"{(est.upper - est.lower) / truth:7.4f}  {dt:6.1f} s (+ {t_fit:.0f} s to train q)")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="smaller T for a fast look")
    p.add_argument("--only", default="overhead,pyro,tightness")
    a = p.parse_args()
    parts = a.only.split(",")
    dev = a.device
    print(f"device={dev}, torch threads={torch.get_num_threads()}")
    T = 100 if a.quick else 500
    if "overhead" in parts:
        print("1. overhead vs the same evaluations of a plain torch function (pilot + final run)")
        lg = LinearGaussian.toy(device=dev)
        overhead("linear-Gaussian (D=5)", lg.model, lambda x: linear_plain_terms(lg, x),
                 N=32, K=16, T=T, L=10, device=dev)
        vae = VAEDecoder(dev)
        overhead("VAE-sized (D=10, x 784)", vae.model, vae.plain_terms,
                 N=64, K=16, T=T // 2, L=10, device=dev)
    if "pyro" in parts:
        print("2. speed-up over Pyro's HMC kernel driven per chain")
        pyro_kernel_speedup(LinearGaussian.toy(device=dev), N=32, K=16, T=T, L=10, device=dev)
    if "tightness" in parts:
        print("3. tightness at ~100 nats")
        if a.quick:
            tightness(dev, [500], [100], 2000)
        else:
            tightness(dev, [1000, 4000], [100, 1000], 10000)
    print(f"peak memory {peak_memory_mb(dev):.0f} MB")


if __name__ == "__main__":
    main()
