"""Overhead of pyromi's IWAE sandwich versus a hand-written pure-torch IWAE of the same model.

Linear-Gaussian toy (z in R^5, x in R^20, sigma = 0.1), prior proposal, N = 256 joint draws,
K = 10,000 particles: both compute the upper bound (K draws) and the lower bound (z* + K-1 draws)
with float64 streaming log-sum-exp, in chunks of the same number of (particle, sample) pairs.
Runs alternate in one process and the ratio of medians is printed (timings on a shared 2-core
machine are noisy; the ratio is what to read).

    python benchmarks/bench_iwae.py [--repeats 5] [--num-particles 10000] [--device cpu]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from pyromi import mutual_information
from pyromi.models import LinearGaussian


def hand_written_iwae(W, sigma, N, K, max_batch, seed, fused=False):
    """Pure torch: draw (x, z*), then K prior proposals per x in chunks; returns (lower, upper).

    ``fused=False`` evaluates log p(x|z) with ``torch.distributions.Normal``, the density code the
    Pyro model runs, so the ratio isolates pyromi's own machinery; ``fused=True`` uses hand-fused
    algebra with a scalar sigma (no broadcast scale tensor), the fastest plain-torch form.
    """
    g = torch.Generator(device=W.device).manual_seed(seed)
    dz = W.shape[1]
    z_star = torch.randn(N, dz, generator=g, device=W.device, dtype=W.dtype)
    x = z_star @ W.T + sigma * torch.randn(N, W.shape[0], generator=g, device=W.device, dtype=W.dtype)
    const = -W.shape[0] * (math.log(sigma) + 0.5 * math.log(2 * math.pi))

    def loglik(z):  # log N(x; W z, sigma^2 I) for z of shape (k, N, dz)
        if fused:
            return const - 0.5 * (((x - z @ W.T) / sigma) ** 2).sum(-1)
        return torch.distributions.Normal(z @ W.T, sigma).log_prob(x).sum(-1)

    ll_star = loglik(z_star.unsqueeze(0))[0].double()
    k_chunk = max(1, max_batch // N)
    lse_up = torch.full((N,), -math.inf, dtype=torch.float64, device=W.device)
    lse_lo = ll_star.clone()  # the lower-bound estimator holds z* and the first K-1 draws
    done = 0
    while done < K:
        k = min(k_chunk, K - done)
        lw = loglik(torch.randn(k, N, dz, generator=g, device=W.device, dtype=W.dtype)).double()
        lse_up = torch.logaddexp(lse_up, torch.logsumexp(lw, 0))
        take = min(k, K - 1 - done)
        if take > 0:
            lse_lo = torch.logaddexp(lse_lo, torch.logsumexp(lw[:take], 0))
        done += k
    upper = (ll_star - (lse_up - math.log(K))).mean()
    lower = (ll_star - (lse_lo - math.log(K))).mean()
    return float(lower), float(upper)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--num-samples", type=int, default=256)
    p.add_argument("--num-particles", type=int, default=10_000)
    p.add_argument("--max-batch", type=int, default=2**18)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    lg = LinearGaussian.toy(device=a.device)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    N, K = a.num_samples, a.num_particles

    def run_pyromi(seed):
        return mutual_information(lg.model, "x", num_samples=N, num_particles=K,
                                  max_batch=a.max_batch, seed=seed)

    # warm-up
    run_pyromi(0)
    hand_written_iwae(lg.W, lg.sigma, N, K, a.max_batch, 0)
    times = {"pyromi": [], "hand-written (torch.distributions)": [], "hand-written (fused algebra)": []}
    for r in range(a.repeats):
        sync(); t = time.perf_counter(); est = run_pyromi(r); sync()
        times["pyromi"].append(time.perf_counter() - t)
        t = time.perf_counter(); hw = hand_written_iwae(lg.W, lg.sigma, N, K, a.max_batch, r); sync()
        times["hand-written (torch.distributions)"].append(time.perf_counter() - t)
        t = time.perf_counter(); hf = hand_written_iwae(lg.W, lg.sigma, N, K, a.max_batch, r, True); sync()
        times["hand-written (fused algebra)"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"linear-Gaussian toy, prior proposal, N={N}, K={K}, max_batch={a.max_batch}, "
          f"device={a.device}, torch threads={torch.get_num_threads()}")
    print(f"  pyromi: {est}")
    print(f"  hand-written (same seed, same draws): lower {hw[0]:.3f}, upper {hw[1]:.3f}; "
          f"fused: lower {hf[0]:.3f}, upper {hf[1]:.3f}")
    for k, v in med.items():
        print(f"  {k:36s} {v * 1e3:8.1f} ms (median of {a.repeats})")
    r1 = med["pyromi"] / med["hand-written (torch.distributions)"]
    r2 = med["pyromi"] / med["hand-written (fused algebra)"]
    print(f"  ratio pyromi / hand-written with the model's densities = {r1:.2f}  (goal <= 1.5)")
    print(f"  ratio pyromi / hand-written with fused algebra         = {r2:.2f}  (model-expression cost included)")


if __name__ == "__main__":
    main()
