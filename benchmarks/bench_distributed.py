"""Strong scaling of Multi-Sample AIS over torch.distributed ranks (gloo, CPU, one thread each).

    python benchmarks/bench_distributed.py [--ranks 1,2] [--steps 200] [--samples 64,512] [--repeats 3] [--cuda]

The same AIS estimate -- a linear-Gaussian model with z in R^8, x in R^16, N joint samples, K = 16
chains, T annealing steps -- is run by ``torchrun --standalone --nproc_per_node=W`` for each W
in ``--ranks`` and each N in ``--samples``, one after the other in this run; each rank times the
call between two barriers (process start-up and imports excluded, a small warm-up call first),
the fastest of ``--repeats`` calls (a shared machine's noise only ever adds time). Printed: wall time per W, the
speed-up over W = 1, the per-transition cost (seconds per HMC transition of one chain-sample pair
per rank) that the README's scaling model uses, and each run's sandwich beside the closed-form MI.

``--cuda`` runs NCCL ranks on cuda:LOCAL_RANK instead (one GPU per rank).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

K = 16


def model_and_truth():
    from pyromi.models import LinearGaussian

    gen = torch.Generator().manual_seed(0)
    lg = LinearGaussian(torch.randn(16, 8, generator=gen) / 8**0.5, 0.5)
    return lg, lg.mutual_information()


def worker(out: str, samples: int, steps: int, cuda: bool, repeats: int) -> None:
    import torch.distributed as dist

    from pyromi import mutual_information

    torch.set_num_threads(1)
    dist.init_process_group("nccl" if cuda else "gloo")
    world = dist.get_world_size()
    lg, truth = model_and_truth()
    device = "cuda" if cuda else None
    kw = dict(bound="ais", num_particles=K, progress=False, device=device)
    mutual_information(lg.model, "x", num_samples=2 * world, num_steps=5, seed=1, **kw)  # warm-up
    seconds = float("inf")
    for _ in range(repeats):
        dist.barrier()
        t0 = time.perf_counter()
        est = mutual_information(lg.model, "x", num_samples=samples, num_steps=steps, seed=0, **kw)
        dist.barrier()
        seconds = min(seconds, time.perf_counter() - t0)
    if dist.get_rank() == 0:
        per_rank_pairs = -(-samples // world) * (K + 1)
        with open(out, "w") as f:
            json.dump({"world": world, "samples": samples, "seconds": seconds, "lower": est.lower, "upper": est.upper,
                       "lower_se": est.lower_se, "upper_se": est.upper_se, "truth": truth,
                       "per_transition": seconds / (steps * per_rank_pairs)}, f)
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--samples", default="64,512")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--cuda", action="store_true")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, int(a.samples), a.steps, a.cuda, a.repeats)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(v) for v in a.samples.split(",")]:
            for w in [int(v) for v in a.ranks.split(",")]:
                out = os.path.join(tmp, f"n{n}-w{w}.json")
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={w}",
                       os.path.abspath(__file__), "--worker", out, "--samples", str(n), "--steps", str(a.steps),
                       "--repeats", str(a.repeats)]
                if a.cuda:
                    cmd.append("--cuda")
                subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                with open(out) as f:
                    rows.append(json.load(f))
    print(f"\nAIS, linear-Gaussian dz = 8, dx = 16, K = {K}, T = {a.steps}; "
          f"{'NCCL, one GPU per rank' if a.cuda else 'gloo, CPU ranks, one thread each'}; fastest of {a.repeats}; "
          f"truth {rows[0]['truth']:.3f} nats\n")
    print("| N | ranks | seconds | speed-up vs first | s per transition per chain-sample pair | sandwich (nats) |")
    print("|---|---|---|---|---|---|")
    base = {}
    for r in rows:
        base.setdefault(r["samples"], r["seconds"])
        print(f"| {r['samples']} | {r['world']} | {r['seconds']:.2f} | {base[r['samples']] / r['seconds']:.2f}x | "
              f"{r['per_transition']:.2e} | [{r['lower']:.3f} ± {r['lower_se']:.3f}, "
              f"{r['upper']:.3f} ± {r['upper_se']:.3f}] |")


if __name__ == "__main__":
    main()
