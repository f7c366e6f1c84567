"""Meta-data for the hybrid head: head inputs and true MI of sets drawn from a family list.

    python -m pyromi.mist.hybrid_data --out DIR --worker W --count N [--split train_v2]

Each worker writes ``DIR/part-<W>.npz`` (``inputs``, ``mi``, ``mi_se``, ``n``, ``dx``, ``dy``,
``family``), rewritten every 500 sets so an interrupted run keeps what it drew; ``--resume``
continues a part. Sets are deterministic in ``(seed, worker, index)``.

Per task: a family uniformly from the split (or from ``--families``, a subset of it, to add sets
of some families); with probability 1/2 ``dx, dy ~ U{1..low_dims}`` (default 4), else
``U{1..d_max}`` (low dimensions, where KSG is nearly exact, are weighted up); hyper-parameters;
then :data:`SETS_PER_TASK` samples with ``n`` log-uniform on ``[n_min, n_max]`` (the Monte Carlo
truth of ``curve``/``mixture`` tasks is paid once per task) and a random X <-> Y swap.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

from . import families as fam
from .hybrid import HybridConfig, hybrid_inputs

SETS_PER_TASK = 3


def draw_sets(split: str, count: int, seed: int, worker: int, base, cfg: HybridConfig, start: int = 0,
              independent: bool = False, families: tuple[str, ...] | None = None, low_dims: int = 4):
    """Yield ``(inputs, mi, mi_se, n, dx, dy, family)`` for tasks ``start, start + 1, ...``.
    ``independent``: the rows of y are shuffled (X and Y independent, MI exactly 0, the marginals
    of the family kept)."""
    families = families or fam.SPLITS[split]
    if not set(families) <= set(fam.SPLITS[split]):
        raise ValueError(f"families {sorted(set(families) - set(fam.SPLITS[split]))} are not in the split {split!r}")
    mcfg = base.config
    made = 0
    t = start
    while made < count:
        rng = np.random.default_rng([seed, worker, t])
        t += 1
        f = families[int(rng.integers(len(families)))]
        hi = low_dims if rng.random() < 0.5 else mcfg.d_max
        dx, dy = (int(v) for v in rng.integers(1, hi + 1, 2))
        task = fam.draw_task(f, dx, dy, rng)
        for _ in range(SETS_PER_TASK):
            n = int(round(math.exp(rng.uniform(math.log(mcfg.n_min), math.log(mcfg.n_max)))))
            x, y = task.sample(n, rng)
            if rng.random() < 0.5:
                x, y = y, x
            mi, se = task.mi, float(task.params.get("mi_se", 0.0))
            if independent:
                y, mi, se = y[rng.permutation(n)], 0.0, 0.0
            if not (np.isfinite(x).all() and np.isfinite(y).all()):
                continue
            inp = hybrid_inputs(x, y, base, cfg, ties=False)
            yield inp, mi, se, n, x.shape[1], y.shape[1], f, t
            made += 1


def main(argv=None) -> None:
    from . import load_pretrained

    ap = argparse.ArgumentParser(prog="python -m pyromi.mist.hybrid_data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--worker", type=int, default=0)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--split", default="train_v2")
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--base", default="mist-medium")
    ap.add_argument("--independent", action="store_true", help="shuffle y: independent sets, MI = 0")
    ap.add_argument("--resume", action="store_true", help="continue the existing part file")
    ap.add_argument("--families", default=None, help="comma-separated subset of the split's families")
    ap.add_argument("--low-dims", type=int, default=4, help="half the tasks draw dx, dy from 1..this")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    base = load_pretrained(a.base)
    cfg = HybridConfig(base_dim=2 * base.config.dim, use_embedding=False)
    families = tuple(a.families.split(",")) if a.families else None
    tag = ("indep-" if a.independent else "") + ("sub-" if families else "")
    path = os.path.join(a.out, f"part-{a.split}-{tag}{a.worker}.npz")
    names = ("inputs", "mi", "mi_se", "n", "dx", "dy", "family", "task")
    cols: dict[str, list] = {k: [] for k in names}
    start = 0
    if a.resume and os.path.exists(path):
        old = np.load(path, allow_pickle=False)
        last = int(old["task"].max())
        keep = old["task"] < last  # the last task may be cut short: drawn again
        cols = {k: list(old[k][keep]) for k in names}
        start = last - 1  # draw_sets numbers tasks from 1 after the first increment
    t0 = time.time()
    done = len(cols["mi"])
    for i, row in enumerate(draw_sets(a.split, a.count - done, a.seed, a.worker, base, cfg, start=start,
                                      independent=a.independent, families=families, low_dims=a.low_dims),
                            start=done):
        for k, v in zip(cols, row):
            cols[k].append(v)
        if (i + 1) % 500 == 0 or i + 1 == a.count:
            np.savez(path, **{k: np.asarray(v) for k, v in cols.items()})
            print(f"{i + 1} sets, {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
