"""Train a MIST network on the on-the-fly meta-dataset.

    python -m pyromi.mist.train --config small [--steps N] [--out DIR] [--resume] [--threads 1]

Every step draws a fresh batch of sets from the ``train`` families (:mod:`pyromi.mist.families`):
one n per batch, log-uniform on ``[n_min, n_max]`` snapped to 40 log-spaced values (see
:func:`n_grid`; a few distinct shapes keep torch's per-shape CPU caches bounded); per set a family, ``dx, dy ~ U{1..d_max}``
independently, hyper-parameters, a sample, and a random X <-> Y swap (MI is symmetric). The data
of step t depend only on ``(seed, t)``, so an interrupted run resumes on the same stream.

Loss: pinball ``L_tau(I, q) = max(tau (I - q), (tau - 1)(I - q))`` at ``taus_per_set`` random
``tau ~ U(0, 1)`` per set (several per set cost nothing: the head is tiny), on the nats scale plus
``log1p_weight`` times the same loss on the ``log(1 + I)`` scale. Both terms are minimised by the
true conditional tau-quantile (quantiles commute with increasing maps), so the sum is still a
proper quantile loss; the second keeps small MI values from being ignored.

AdamW (weight decay on matrices only: weights, inducing points, seeds), linear warm-up, gradient
clipping, learning rate halved when the validation loss has not improved for ``patience``
evaluations. Validation: a fixed grid of the ``val`` families (disjoint from both test grids);
the model with the lowest validation pinball loss (nats, tau in {.05, .25, .5, .75, .95}) is
kept in ``best.pt``; ``last.pt`` holds the full state for ``--resume``; ``log.json`` the curve.
Checkpoints hold only tensors and plain values (dicts, lists, numbers, strings) and are read back with
``torch.load(weights_only=True)``: a file holding anything else is refused (nothing in it runs). The
caller's global torch RNG state is restored when training returns.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time

import numpy as np
import torch

from ..distributed import DataParallel
from . import families as fam
from .model import MISTConfig, MISTNet, collate, encode_set, widen_state_dict

__all__ = ["CONFIGS", "pinball", "train", "build_val", "evaluate", "calibrate", "export", "main"]

#: Named training configurations. ``model`` holds :class:`MISTConfig` fields.
CONFIGS: dict[str, dict] = {
    "tiny": dict(
        model=dict(d_max=4, dim=32, heads=2, num_inducing=8, num_isab=1, num_seeds=2, ffn=64,
                   row_hidden=64, head_hidden=64, num_basis=8, n_min=10, n_max=200),
        batch=16, steps=60, lr=1e-3, weight_decay=1e-4, warmup=10, eval_every=20, taus_per_set=8,
        log1p_weight=1.0, clip=1.0, patience=4, lr_factor=0.5, min_lr=2e-5, seed=20251123,
        val_n=(12, 50, 200), val_reps=2, save_every=20,
    ),
    "small": dict(
        model=dict(d_max=16, norm="rank", dim=64, heads=4, num_inducing=16, num_isab=2, num_seeds=4,
                   ffn=128, row_hidden=128, head_hidden=128, num_basis=16, n_min=10, n_max=1000),
        batch=64, steps=40000, lr=1e-3, weight_decay=1e-4, warmup=300, eval_every=500,
        taus_per_set=8, log1p_weight=1.0, clip=1.0, patience=3, lr_factor=0.5, min_lr=2e-5,
        seed=20251123, val_n=(10, 22, 50, 110, 250, 550, 1000), val_reps=6, save_every=500,
    ),
    "large": dict(
        model=dict(d_max=32, norm="rank", dim=128, heads=8, num_inducing=32, num_isab=3, num_seeds=8,
                   ffn=256, row_hidden=256, head_hidden=256, num_basis=24, n_min=10, n_max=2000),
        batch=256, steps=100000, lr=5e-4, weight_decay=1e-4, warmup=1000, eval_every=1000,
        taus_per_set=8, log1p_weight=1.0, clip=1.0, patience=6, lr_factor=0.5, min_lr=1e-5,
        seed=20251123, val_n=(10, 22, 50, 110, 250, 550, 1000, 2000), val_reps=8, save_every=1000,
    ),
}
# the small network widened to dx, dy <= 32 and n <= 2000 (only d_max and the n range differ, as
# widen_state_dict requires); meant to be warm-started from the small weights with ``--init``
CONFIGS["medium"] = copy.deepcopy(CONFIGS["small"])
CONFIGS["medium"]["model"].update(d_max=32, n_max=2000)
CONFIGS["medium"].update(steps=8000, lr=5e-4, warmup=200, patience=2, seed=20261123,
                         val_n=(10, 22, 50, 110, 250, 550, 1000, 2000), val_reps=4)
CONFIGS["small-standard"] = copy.deepcopy(CONFIGS["small"])
CONFIGS["small-standard"]["model"]["norm"] = "standard"
CONFIGS["small-nofeat"] = copy.deepcopy(CONFIGS["small"])
CONFIGS["small-nofeat"]["model"]["use_set_features"] = False

VAL_TAUS = (0.05, 0.25, 0.5, 0.75, 0.95)


def pinball(target: torch.Tensor, q: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
    """Elementwise ``max(tau (y - q), (tau - 1)(y - q))``; ``target`` ``(B, 1)`` broadcasts on ``q``."""
    d = target - q
    return torch.maximum(taus * d, (taus - 1.0) * d)


def _decay_groups(net: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay = [p for p in net.parameters() if p.dim() >= 2]
    no_decay = [p for p in net.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def n_grid(mcfg: MISTConfig, size: int = 40) -> np.ndarray:
    """The training sample sizes: ``size`` log-spaced integers on ``[n_min, n_max]``."""
    return np.unique(np.round(np.geomspace(mcfg.n_min, mcfg.n_max, size)).astype(int))


def draw_batch(cfg: dict, mcfg: MISTConfig, step: int, families: tuple[str, ...]):
    """The training batch of ``step`` (deterministic in ``(seed, step)``)."""
    rng = np.random.default_rng([cfg["seed"], 7, step])
    n = int(round(math.exp(rng.uniform(math.log(mcfg.n_min), math.log(mcfg.n_max)))))
    grid = n_grid(mcfg)
    n = int(grid[np.argmin(np.abs(np.log(grid) - math.log(n)))])  # few distinct shapes: bounded CPU caches
    enc, mi = [], []
    for _ in range(cfg["batch"]):
        s = fam.draw_set(families, n, rng, d_max=mcfg.d_max)
        x, y = (s.y, s.x) if rng.random() < 0.5 else (s.x, s.y)
        enc.append(encode_set(x, y, mcfg, ties=False))
        mi.append(s.mi)
    tok, mask, feats = collate(enc)
    return tok, mask, feats, torch.tensor(mi, dtype=torch.float32)


def build_val(cfg: dict, mcfg: MISTConfig, split: str = "val", seed_offset: int = 0) -> list[dict]:
    """Encoded validation grid, grouped by n: ``[{n, tok, mask, feats, mi, family}]``."""
    grid = fam.make_grid(split, cfg["val_n"], cfg["val_reps"], seed=cfg["seed"] + 1 + seed_offset, d_max=mcfg.d_max)
    groups: dict[int, list] = {}
    for s, _, _ in grid:
        groups.setdefault(s.x.shape[0], []).append(s)
    out = []
    for n, sets in sorted(groups.items()):
        tok, mask, feats = collate([encode_set(s.x, s.y, mcfg) for s in sets])
        out.append(dict(n=n, tok=tok, mask=mask, feats=feats, mi=torch.tensor([s.mi for s in sets]),
                        family=[s.family for s in sets]))
    return out


@torch.no_grad()
def evaluate(net: MISTNet, val: list[dict], taus=VAL_TAUS, chunk: int = 64) -> dict:
    """Validation metrics: mean pinball (nats) over ``taus``, MSE/MAE of the median, coverage of
    ``[q_.05, q_.95]``, the same MSE on the held-out families only."""
    net.eval()
    t = torch.tensor(taus)
    qs, mis, famz = [], [], []
    for g in val:
        for i in range(0, len(g["mi"]), chunk):
            sl = slice(i, i + chunk)
            qs.append(net(g["tok"][sl], g["mask"][sl], g["feats"][sl], t))
        mis.append(g["mi"])
        famz += g["family"]
    net.train()
    q, mi = torch.cat(qs), torch.cat(mis).float()
    loss = pinball(mi[:, None], q, t).mean()
    med = q[:, taus.index(0.5)]
    err = med - mi
    cover = ((q[:, 0] <= mi) & (mi <= q[:, -1])).float()
    held = torch.tensor([f in fam.SPLITS["val_held_out"] for f in famz])
    return {
        "val_pinball": float(loss),
        "val_mse": float((err**2).mean()),
        "val_mae": float(err.abs().mean()),
        "val_cov90": float(cover.mean()),
        "val_held_mse": float((err[held] ** 2).mean()) if held.any() else float("nan"),
        "val_held_cov90": float(cover[held].mean()) if held.any() else float("nan"),
    }


def _save(path: str, obj) -> None:
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(config: str, out: str, *, steps: int | None = None, resume: bool = False, threads: int | None = None,
          overrides: dict | None = None, init: str | None = None) -> dict:
    """Run (or resume) training of the named config into ``out``; returns the final log entry.

    ``threads``: torch intra-op threads (``None`` leaves the setting alone; the CLI passes 1).
    ``overrides``: replacements for top-level config keys (e.g. ``{"steps": 10}``).
    ``init``: a checkpoint (``best.pt`` of another run, or exported weights) to start from instead
    of a random initialisation; a smaller ``d_max`` is widened function-preservingly
    (:func:`~pyromi.mist.model.widen_state_dict`). Ignored when resuming.
    """
    if config not in CONFIGS:
        raise ValueError(f"unknown config {config!r}; choose one of {sorted(CONFIGS)}")
    unknown = set(overrides or {}) - set(CONFIGS[config])
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; valid: {sorted(CONFIGS[config])}")
    if threads is not None:
        torch.set_num_threads(threads)
    cfg = copy.deepcopy(CONFIGS[config])
    cfg.update(overrides or {})
    if steps is not None:
        cfg["steps"] = steps
    mcfg = MISTConfig.from_dict(cfg["model"])
    os.makedirs(out, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG state is left as it was
        return _train(config, cfg, mcfg, out, resume, init)


def _load_run_file(path: str, what: str) -> dict:
    """``torch.load(weights_only=True)`` of a file this module wrote (tensors and plain values only);
    any failure is a :class:`~pyromi.mist.WeightsError` naming the file -- nothing in it is run."""
    from . import WeightsError

    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(
            f"{path} is not a valid {what} ({type(e).__name__}): the file is corrupt, was altered, or "
            f"holds objects other than tensors and plain values, and is not loaded. Delete it (or "
            f"the run directory) and train again"
        ) from None
    if not isinstance(ck, dict) or "model" not in ck:
        raise WeightsError(f"{path} is not a valid {what}: expected a dict with 'model'; delete it and train again")
    return ck


def _train(config: str, cfg: dict, mcfg: MISTConfig, out: str, resume: bool, init: str | None) -> dict:
    # under torchrun: data-parallel (pyromi.distributed.DataParallel, DDP's arithmetic): rank r
    # trains on batch step * W + r, gradients are averaged, and only rank 0 writes files
    par = DataParallel()
    world, rank = (1, 0) if par.ctx is None else (par.ctx.world_size, par.ctx.rank)
    torch.manual_seed(cfg["seed"])
    net = MISTNet(mcfg)
    opt = torch.optim.AdamW(_decay_groups(net, cfg["weight_decay"]), lr=cfg["lr"], eps=1e-8)
    state = {"step": 0, "lr_scale": 1.0, "best": math.inf, "bad_evals": 0, "elapsed": 0.0, "log": []}
    last = os.path.join(out, "last.pt")
    if resume and os.path.exists(last):
        ck = _load_run_file(last, "training checkpoint (last.pt)")
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        print(f"resumed at step {state['step']} (best val {state['best']:.4f})", flush=True)
    else:
        if resume:
            print(f"--resume: no {last}; starting fresh", flush=True)
        if init is not None:
            ck = _load_run_file(init, "checkpoint to initialise from")
            net.load_state_dict(widen_state_dict(ck["model"], MISTConfig.from_dict(ck["config"]), mcfg))
            print(f"initialised from {init} (d_max {ck['config']['d_max']} -> {mcfg.d_max})", flush=True)
    if rank == 0:
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump({"name": config, **cfg, **({"init": init} if init else {})}, f, indent=1)
    val = build_val(cfg, mcfg)
    families = fam.SPLITS["train"]
    nparams = sum(p.numel() for p in net.parameters())
    print(f"config {config}: {nparams} parameters, {sum(len(g['mi']) for g in val)} validation sets", flush=True)
    t_start = time.time() - state["elapsed"]
    run_loss, run_count = 0.0, 0
    params = list(net.parameters())
    par.start(params)
    while state["step"] < cfg["steps"]:
        step = state["step"]
        warm = min(1.0, (step + 1) / cfg["warmup"])
        for g in opt.param_groups:
            g["lr"] = cfg["lr"] * state["lr_scale"] * warm
        batch = step * world + rank
        tok, mask, feats, mi = draw_batch(cfg, mcfg, batch, families)
        taus = torch.rand(len(mi), cfg["taus_per_set"], generator=torch.Generator().manual_seed(cfg["seed"] * 31 + batch))
        u = net.log1p_quantiles(tok, mask, feats, taus)
        loss = pinball(mi[:, None], torch.expm1(u), taus).mean()
        loss = loss + cfg["log1p_weight"] * pinball(torch.log1p(mi)[:, None], u, taus).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        par.reduce(params)
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg["clip"])
        opt.step()
        state["step"] = step + 1
        run_loss += par.objective(loss.item())
        run_count += 1
        if state["step"] % cfg["eval_every"] == 0 or state["step"] == cfg["steps"]:
            m = evaluate(net, val)
            state["elapsed"] = time.time() - t_start
            entry = {"step": state["step"], "elapsed_s": round(state["elapsed"], 1),
                     "lr": opt.param_groups[0]["lr"], "train_loss": run_loss / max(run_count, 1), **m}
            run_loss, run_count = 0.0, 0
            improved = m["val_pinball"] < state["best"]
            if improved:
                state["best"], state["bad_evals"] = m["val_pinball"], 0
                if rank == 0:
                    _save(os.path.join(out, "best.pt"), {"model": net.state_dict(), "config": mcfg.to_dict(),
                                                         "step": state["step"], "metrics": m})
            else:
                state["bad_evals"] += 1
                if state["bad_evals"] >= cfg["patience"] and cfg["lr"] * state["lr_scale"] > cfg["min_lr"]:
                    state["lr_scale"] *= cfg["lr_factor"]
                    state["bad_evals"] = 0
            entry["best"] = improved
            state["log"].append(entry)
            if rank == 0:
                print(json.dumps(entry), flush=True)
                with open(os.path.join(out, "log.json"), "w") as f:
                    json.dump(state["log"], f, indent=0)
                _save(last, {"model": net.state_dict(), "opt": opt.state_dict(), "state": state})
    return state["log"][-1] if state["log"] else {}


CAL_LEVELS = (0.5, 0.8, 0.9, 0.95)
CAL_N = (10, 12, 15, 18, 22, 27, 33, 40, 50, 60, 75, 90, 110, 140, 170, 210, 260, 320, 400, 500, 620, 800, 1000,
         1250, 1600, 2000)  # sizes above the weights' n_max are skipped
CAL_EDGES = (30, 100, 300)  # n-bins [n_min, 30), [30, 100), [100, 300), [300, n_max]


def conformity_ratios(T: np.ndarray, m: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-sided conformity ratios of an interval ``[lo, hi]`` around the median ``m`` (all on the
    ``log(1 + I)`` scale) for truths ``T``: ``(T - m) / (hi - m)`` (upper end) and
    ``(m - T) / (m - lo)`` (lower end). At most one is positive; their maximum is the symmetric
    ratio (the upper one when ``T >= m``, else the lower one)."""
    return (T - m) / np.maximum(hi - m, 1e-9), (m - T) / np.maximum(m - lo, 1e-9)


def _conformal_scale(r: np.ndarray, level: float) -> float:
    """Split-conformal multiplier: the ceil((N + 1) level)-th smallest ratio r_i (finite-sample valid)."""
    k = min(len(r), math.ceil((len(r) + 1) * level))
    return float(np.sort(r)[k - 1])


def calibrate(pre, *, seed: int = 777, reps: int = 4, big_reps: int = 4, d_max: int | None = None) -> dict:
    """Fit interval scales per (level, n-bin) and the block-shrinkage exponent on the ``val`` families,
    for both rules: ``scales`` (pooled: one conformal factor over all validation sets of the bin) and
    ``scales_family_robust`` (the largest per-family factor, so each validation family is covered;
    the default, ``default_rule``).

    On fresh sets of the validation families (disjoint from both test grids) with ``n <= n_max``,
    for each level in :data:`CAL_LEVELS` and each n-bin (edges :data:`CAL_EDGES`), the scale ``s``
    is the split-conformal quantile of ``r_i = (u_i - m_i) / (hi_i - m_i)`` (truth above the
    median) or ``(m_i - u_i) / (m_i - lo_i)`` (below), on the ``log(1 + I)`` scale, so that
    ``m + s (q - m)`` covers a fraction ``level`` of these sets. Then, on sets with
    ``n_max < n <= 5 n_max`` (2 to 5 blocks), ``gamma`` in the block rule ``s B^-gamma`` is the grid
    value whose 90% coverage is closest to 0.9.
    """
    from . import _block_log1p_quantiles

    cfg = pre.config
    d_max = d_max or cfg.d_max
    small_n = [n for n in CAL_N if cfg.n_min <= n <= cfg.n_max]
    edges = [cfg.n_min] + [e for e in CAL_EDGES if cfg.n_min < e <= cfg.n_max] + [cfg.n_max + 1]
    taus = np.array(sorted({0.5} | {(1 - l) / 2 for l in CAL_LEVELS} | {(1 + l) / 2 for l in CAL_LEVELS}))
    mid = int(np.argmin(np.abs(taus - 0.5)))
    grid_small = fam.make_grid("val", small_n, reps, seed=seed, d_max=d_max)
    U = np.array([_block_log1p_quantiles(s.x, s.y, taus, pre, seed=0)[0] for s, _, _ in grid_small])
    F = np.array([s.family for s, _, _ in grid_small])
    T = np.log1p([s.mi for s, _, _ in grid_small])
    N = np.array([s.x.shape[0] for s, _, _ in grid_small])
    m = U[:, mid]
    out: dict = {"levels": list(CAL_LEVELS), "n_edges": edges, "scales": [], "scales_family_robust": [],
                 "raw_coverage": [], "num_sets": len(T), "default_rule": "family_robust"}
    for lev in CAL_LEVELS:
        lo = U[:, np.argmin(np.abs(taus - (1 - lev) / 2))]
        hi = U[:, np.argmin(np.abs(taus - (1 + lev) / 2))]
        r = np.maximum(*conformity_ratios(T, m, lo, hi))
        cov = (lo <= T) & (T <= hi)
        sc, sf, rc = [], [], []
        for a, b in zip(edges[:-1], edges[1:]):
            k = (N >= a) & (N < b)
            sc.append(_conformal_scale(r[k], lev))
            sf.append(max(_conformal_scale(r[k & (F == f)], lev) for f in np.unique(F[k])))
            rc.append(float(cov[k].mean()))
        out["scales"].append(sc)
        out["scales_family_robust"].append(sf)
        out["raw_coverage"].append(rc)
    # gamma for subsample-and-combine
    pre_cal = type(pre)(pre.net, pre.config, pre.name, pre.sha256, {"calibration": out})
    big_n = [int(cfg.n_max * f) for f in (1.5, 2.5, 4.0, 5.0)]
    grid_big = fam.make_grid("val", big_n, big_reps, seed=seed + 1, d_max=d_max)
    lo9, hi9 = np.argmin(np.abs(taus - 0.05)), np.argmin(np.abs(taus - 0.95))
    blocks = [(_block_log1p_quantiles(s.x, s.y, taus, pre, seed=0), math.log1p(s.mi), s.x.shape[0]) for s, _, _ in grid_big]
    for rule, suffix in (("pooled", ""), ("family_robust", "_family_robust")):
        best = None
        cov_by_gamma = {}
        for gamma in np.round(np.arange(0.0, 1.01, 0.05), 2):
            cov = []
            for u, t, n in blocks:
                b = u.shape[0]
                s9 = pre_cal.scale_for(0.9, n // b, rule)
                mm = u[:, mid].mean()
                dev = (u - u[:, mid : mid + 1]).mean(0) * s9 * b ** (-gamma)
                cov.append(mm + dev[lo9] <= t <= mm + dev[hi9])
            c = float(np.mean(cov))
            cov_by_gamma[float(gamma)] = c
            if best is None or abs(c - 0.9) < abs(best[1] - 0.9) - 1e-12:
                best = (float(gamma), c)
        out["combine_gamma" + suffix], out["combine_coverage90" + suffix] = best
        out["combine_coverage_by_gamma" + suffix] = cov_by_gamma
    out["combine_num_sets"] = len(blocks)
    return out


def export(run_dir: str, name: str, *, dest: str | None = None, calibration: dict | None = None,
           shape_q99: list | None = None) -> dict:
    """Write ``<dest>/<name>.pt`` (plain state_dict + config: loadable with ``weights_only=True``)
    and ``<name>.json`` (config, training summary, calibration, the training MI's 99th percentile
    overall and per shape -- ``trained_mi_q99_by_shape``, :func:`~pyromi.mist.families.mi_quantile_by_shape`
    -- and the SHA-256 of the .pt). ``shape_q99`` skips computing that table (tests)."""
    import hashlib

    from . import WEIGHTS_DIR, load_checkpoint

    dest = dest or str(WEIGHTS_DIR)
    os.makedirs(dest, exist_ok=True)
    best = _load_run_file(os.path.join(run_dir, "best.pt"), "best checkpoint (best.pt)")
    state = {"model": {k: v.clone() for k, v in best["model"].items()}, "config": dict(best["config"])}
    pt = os.path.join(dest, f"{name}.pt")
    torch.save(state, pt)
    sha = hashlib.sha256(open(pt, "rb").read()).hexdigest()
    pre = load_checkpoint(pt)
    if calibration is None:
        calibration = calibrate(pre)
    if shape_q99 is None:
        shape_q99 = np.round(fam.mi_quantile_by_shape(fam.SPLITS["train"], pre.config.d_max), 2).tolist()
    log = json.load(open(os.path.join(run_dir, "log.json")))
    run_cfg = json.load(open(os.path.join(run_dir, "config.json")))
    curve = [{k: e[k] for k in ("step", "elapsed_s", "lr", "train_loss", "val_pinball", "val_mse", "val_cov90", "val_held_mse")} for e in log]
    meta = {
        "name": name,
        "sha256": sha,
        "config": state["config"],
        "trained_mi_q99": pre.trained_mi_q99,  # computed from the config: the checkpoint has no record yet
        "trained_mi_q99_by_shape": shape_q99,
        "training": {
            "run_config": run_cfg,
            "parameters": sum(v.numel() for v in state["model"].values()),
            "best_step": int(best["step"]),
            "best_metrics": best["metrics"],
            "steps": log[-1]["step"] if log else 0,
            "wall_seconds": log[-1]["elapsed_s"] if log else 0,
            "curve": curve,
        },
        "calibration": calibration,
    }
    with open(os.path.join(dest, f"{name}.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pyromi.mist.train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="small", choices=sorted(CONFIGS))
    ap.add_argument("--steps", type=int, default=None, help="total steps (overrides the config)")
    ap.add_argument("--out", default=None, help="run directory (default ./mist_runs/<config>)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--init", default=None, metavar="CKPT",
                    help="start from this checkpoint (e.g. another run's best.pt); d_max is widened if smaller")
    ap.add_argument("--export", metavar="NAME", default=None,
                    help="instead of training: calibrate <out>/best.pt and write pyromi/mist/weights/NAME.{pt,json}")
    a = ap.parse_args(argv)
    if a.export:
        torch.set_num_threads(a.threads)
        meta = export(a.out or os.path.join("mist_runs", a.config), a.export)
        print(json.dumps({k: meta[k] for k in ("name", "sha256", "calibration")}, indent=1))
        return
    train(a.config, a.out or os.path.join("mist_runs", a.config), steps=a.steps, resume=a.resume, threads=a.threads,
          init=a.init)


if __name__ == "__main__":
    main()
