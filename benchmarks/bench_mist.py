"""MIST versus KSG and CCA on in-distribution and unseen-family test grids, with timings.

Grids (:mod:`pyromi.mist.families`; for weights trained on the second meta-prior, ``train_v2``,
the ``*_v2`` grids): ``test_imd_v2`` = training families with fresh seeds; ``test_unseen_v2`` =
families never used in training or calibration: the ``mixture`` structure (Gaussian mixtures,
Monte Carlo truth), the ``spiral`` transform (a norm-dependent rotation, non-monotone in every
coordinate), (structure, transform) pairs never trained on, and random normalising flows on
structures never trained with flows. Every (family, n) cell holds ``--reps`` tasks with
``dx, dy ~ U{1..d_max}`` drawn independently; n runs from 10 to 5000 (n above the trained maximum
goes through subsample-and-combine). A third grid draws the unseen families with ``dx, dy`` in
1..3 (n = 50..2000), where KSG is nearly exact. All estimators run on the same samples:

* MIST: the shipped weights, median and 90% interval (default calibration rule; the other rule's
  coverage is printed beside it);
* KSG: estimator 1, k = 5, max-norm, on the full X and Y blocks, reported as max(0, KSG);
* CCA: Gaussian MI of the canonical correlations (correlation shrinkage 1e-3, so n <= dx + dy works).

Printed: MSE (nats^2) and MAE (of the median) by n-bin; coverage of the nominal 90% interval against
the true MI, where an interval the range check opened above (``upper is None``) covers iff
``lower <= MI``; how many intervals were opened, the coverage among the closed ones alone and the
mean and median width of the closed ones; per-family errors; the low-dimensional unseen grid per
family (MIST / KSG ratio); independent data (does the interval contain 0, n up to 20,000);
milliseconds per MIST estimate, and the seconds KSG and an InfoNCE critic need on the same sample;
and the issue's goals, met or not. Timings are wall-clock on this machine, single-threaded.

    python benchmarks/bench_mist.py [--quick] [--reps 3] [--weights NAME] [--plot mist.png] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings

import numpy as np
import torch

from pyromi import baselines
from pyromi import mist
from pyromi.mist import families as fam

N_VALUES = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
BINS = ((10, 99), (100, 999), (1000, 5000))
SEED = 4242


def run_grid(split: str, n_values, reps: int, pre, d_max: int) -> list[dict]:
    rows = []
    for s, dx, dy in fam.make_grid(split, n_values, reps, seed=SEED, d_max=d_max):
        n = s.x.shape[0]
        with warnings.catch_warnings():  # extrapolation warnings: counted in the records, not printed per set
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            e = mist.estimate(s.x, s.y, model=pre, seed=0)
            t_mist = time.perf_counter() - t0
            ep = mist.estimate(s.x, s.y, model=pre, seed=0, calibration=_other_rule(pre))
        # an interval opened by the range check has upper None (unbounded above)
        t0 = time.perf_counter()
        k = max(0.0, baselines.ksg_mi(s.x, s.y, k=5))
        t_ksg = time.perf_counter() - t0
        c = baselines.cca_mi(s.x, s.y, shrinkage=1e-3)
        rows.append(dict(split=split, family=s.family, n=n, dx=dx, dy=dy, mi=s.mi, mist=e.value, lo=e.lower,
                         hi=e.upper, extrapolation=e.diagnostics["extrapolation"], opened=bool(e.diagnostics["beyond_trained_range"]),
                         lo_alt=ep.lower, hi_alt=ep.upper, opened_alt=bool(ep.diagnostics["beyond_trained_range"]),
                         ksg=k, cca=c, t_mist=t_mist, t_ksg=t_ksg))
    return rows


def _other_rule(pre) -> str:
    """The calibration rule that is not the weights' default (printed beside it)."""
    return "pooled" if pre.rule() == "family_robust" else "family_robust"


def _covers(lo, hi, mi) -> bool:
    """Whether ``[lo, hi]`` holds ``mi``; ``hi is None`` (opened by the range check) is unbounded above."""
    return lo <= mi and (hi is None or mi <= hi)


def _interval_stats(rows: list[dict], suffix: str) -> dict:
    lo, hi = f"lo{suffix}", f"hi{suffix}"
    closed = [r for r in rows if r[hi] is not None]
    widths = [r[hi] - r[lo] for r in closed]
    nan = float("nan")
    return {
        "cov": float(np.mean([_covers(r[lo], r[hi], r["mi"]) for r in rows])),
        "opened": len(rows) - len(closed),
        "opened_cover": sum(_covers(r[lo], r[hi], r["mi"]) for r in rows if r[hi] is None),
        "cov_closed": float(np.mean([_covers(r[lo], r[hi], r["mi"]) for r in closed])) if closed else nan,
        "width_mean": float(np.mean(widths)) if closed else nan,
        "width": float(np.median(widths)) if closed else nan,
    }


def _stats(rows: list[dict]) -> dict:
    mi = np.array([r["mi"] for r in rows])
    out = {"count": len(rows)}
    for m in ("mist", "ksg", "cca"):
        err = np.array([r[m] for r in rows]) - mi
        out[f"mse_{m}"] = float(np.mean(err**2))
        out[f"mae_{m}"] = float(np.mean(np.abs(err)))
    out.update(_interval_stats(rows, ""))
    out.update({f"{k}_alt": v for k, v in _interval_stats(rows, "_alt").items()})
    return out


def _bin_rows(rows):
    for lo, hi in BINS:
        sel = [r for r in rows if lo <= r["n"] <= hi]
        if sel:
            yield f"{lo}-{hi}", sel
    yield "all", rows


def print_tables(rows: list[dict], splits) -> dict:
    summary = {}
    for split in splits:
        sr = [r for r in rows if r["split"] == split]
        print(f"\n### {split}: {len(sr)} sets, {len({r['family'] for r in sr})} families\n")
        print("| n | sets | MSE MIST | MSE KSG | MSE CCA | MAE MIST | MAE KSG | MAE CCA |")
        print("|---|---|---|---|---|---|---|---|")
        for name, sel in _bin_rows(sr):
            s = _stats(sel)
            summary[(split, name)] = s
            print(f"| {name} | {s['count']} | {s['mse_mist']:.3f} | {s['mse_ksg']:.3f} | {s['mse_cca']:.3f} | "
                  f"{s['mae_mist']:.3f} | {s['mae_ksg']:.3f} | {s['mae_cca']:.3f} |")
        print(f"\n90% intervals on {split} (opened = unbounded above by the range check, covering iff lower <= MI; "
              "closed-only coverage and widths leave the opened ones out):\n")
        print("| n | rule | 90% cover | opened (of which cover) | cover, closed only | mean width, closed | "
              "median width, closed |")
        print("|---|---|---|---|---|---|---|")
        for name, sel in _bin_rows(sr):
            s = summary[(split, name)]
            for rule, k in (("default", ""), ("other rule", "_alt")):
                print(f"| {name} | {rule} | {s['cov' + k]:.3f} | {s['opened' + k]} ({s['opened_cover' + k]}) | "
                      f"{s['cov_closed' + k]:.3f} | {s['width_mean' + k]:.3f} | {s['width' + k]:.3f} |")
    print("\n### per family (all n)\n")
    print("| grid | family | mean MI | MSE MIST | MSE KSG | MSE CCA | 90% cover | opened | cover, closed only "
          "| (other rule) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for split in splits:
        for f in fam.SPLITS[split]:
            sel = [r for r in rows if r["split"] == split and r["family"] == f]
            if not sel:
                continue
            s = _stats(sel)
            print(f"| {split[5:]} | {f} | {np.mean([r['mi'] for r in sel]):.2f} | {s['mse_mist']:.3f} | "
                  f"{s['mse_ksg']:.3f} | {s['mse_cca']:.3f} | {s['cov']:.2f} | {s['opened']} | {s['cov_closed']:.2f} | "
                  f"{s['cov_alt']:.2f} |")
    summary[("both", "all")] = _stats(rows)
    return summary


def timings(pre, repeats: int, infonce_samples: int) -> dict:
    rng = np.random.default_rng(SEED)
    task = fam.draw_task("gauss-sparse-flow", min(8, pre.config.d_max), min(8, pre.config.d_max), rng)
    print("\n### timings (dx = dy = 8, single thread)\n")
    print("| n | MIST ms/estimate (median) | blocks | KSG s | InfoNCE train s (500 steps, batch 128) |")
    print("|---|---|---|---|---|")
    out = {}
    for n in (100, 1000, 5000):
        x, y = task.sample(n, rng)
        mist.estimate(x, y, model=pre, seed=0)  # warm-up
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            e = mist.estimate(x, y, model=pre, seed=0)
            ts.append(1e3 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        baselines.ksg_mi(x, y)
        t_ksg = time.perf_counter() - t0
        t_nce = []
        if n <= 1000:
            for i in range(infonce_samples):
                _, sec = baselines.infonce_mi(x, y, steps=500, batch_size=128, seed=i, return_seconds=True)
                t_nce.append(sec)
        ms = statistics.median(ts)
        nce = f"{statistics.median(t_nce):.1f}" if t_nce else "-"
        print(f"| {n} | {ms:.1f} | {e.diagnostics['blocks']} | {t_ksg:.2f} | {nce} |")
        out[n] = {"mist_ms": ms, "ksg_s": t_ksg, "infonce_s": statistics.median(t_nce) if t_nce else None}
    return out


def low_dim_table(rows: list[dict]) -> float:
    """Per unseen family on the 1..3-dimensional grid: MAE of MIST, KSG, CCA and MIST/KSG; returns
    the largest ratio."""
    print("\n### unseen families, dx, dy in 1..3 (KSG is nearly exact here)\n")
    print("| family | sets | mean MI | MAE MIST | MAE KSG | MAE CCA | MIST / KSG | 90% cover |")
    print("|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for f in sorted({r["family"] for r in rows}):
        sel = [r for r in rows if r["family"] == f]
        s = _stats(sel)
        ratio = s["mae_mist"] / max(s["mae_ksg"], 1e-12)
        worst = max(worst, ratio)
        print(f"| {f} | {len(sel)} | {np.mean([r['mi'] for r in sel]):.2f} | {s['mae_mist']:.3f} | {s['mae_ksg']:.3f} | "
              f"{s['mae_cca']:.3f} | {ratio:.2f} | {s['cov']:.2f} |")
    s = _stats(rows)
    print(f"| **all** | {len(rows)} | {np.mean([r['mi'] for r in rows]):.2f} | {s['mae_mist']:.3f} | {s['mae_ksg']:.3f} | "
          f"{s['mae_cca']:.3f} | {s['mae_mist'] / max(s['mae_ksg'], 1e-12):.2f} | {s['cov']:.2f} |")
    return worst


def independence(pre, seeds: int) -> dict:
    """Fraction of seeds whose 90% interval contains 0 for independent x, y (dx = 2, dy = 3, half
    Gaussian, half Student-t with 2 degrees of freedom), per n."""
    print(f"\n### independent x, y: 90% interval contains 0 ({seeds} seeds per n)\n")
    print("| n | blocks | contains 0 | median upper end (nats) |")
    print("|---|---|---|---|")
    out = {}
    for n in (100, 1000, 5000, 20000):
        hits, ups = 0, []
        for s in range(seeds):
            rng = np.random.default_rng([SEED, 77, n, s])
            x, y = rng.standard_normal((n, 2)), rng.standard_normal((n, 3))
            if s % 2:
                x, y = x / np.sqrt(rng.chisquare(2, (n, 1)) / 2), y / np.sqrt(rng.chisquare(2, (n, 1)) / 2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                e = mist.estimate(x, y, model=pre, seed=s)
            hits += e.lower <= 0.0
            ups.append(math.inf if e.upper is None else e.upper)
        out[n] = hits / seeds
        print(f"| {n} | {e.diagnostics['blocks']} | {hits}/{seeds} = {hits / seeds:.2f} | {statistics.median(ups):.3f} |")
    return out


def goals(summary: dict, times: dict, splits, worst_low: float, indep: dict) -> None:
    imd, unseen = splits
    print("\n### goals (unseen = families never used in training or calibration)\n")
    print("| goal | measured | met |")
    print("|---|---|---|")
    for lo, hi in BINS:
        key = (unseen, f"{lo}-{hi}")
        if key not in summary:
            continue
        s = summary[key]
        ratio = s["mae_mist"] / s["mae_ksg"]
        ok = ratio <= 0.5 and s["mae_mist"] < s["mae_cca"]
        if lo >= 100:
            print(f"| n {lo}-{hi}: MAE <= 0.5 x KSG's and < CCA's | MIST {s['mae_mist']:.3f}, KSG {s['mae_ksg']:.3f} "
                  f"(ratio {ratio:.2f}), CCA {s['mae_cca']:.3f} | {'yes' if ok else 'no'} |")
        print(f"| n {lo}-{hi}: 90% coverage in [0.85, 0.95] | {s['cov']:.3f} | {'yes' if 0.85 <= s['cov'] <= 0.95 else 'no'} |")
    print(f"| every unseen family, dx, dy <= 3: MAE <= 1.2 x KSG's | worst ratio {worst_low:.2f} | {'yes' if worst_low <= 1.2 else 'no'} |")
    print(f"| independent data: interval contains 0 in >= 85% of seeds, n <= 20,000 | "
          f"{', '.join(f'{v:.2f}' for v in indep.values())} | {'yes' if min(indep.values()) >= 0.85 else 'no'} |")
    ms = max(times[n]["mist_ms"] for n in (100, 1000))
    print(f"| <= 50 ms per estimate at n <= 1000 (one thread, everything included) | {ms:.1f} ms | {'yes' if ms <= 50 else 'no'} |")
    i = summary[(imd, "all")]
    print(f"\n(in-distribution grid {imd}: MAE MIST {i['mae_mist']:.3f}, KSG {i['mae_ksg']:.3f}, CCA {i['mae_cca']:.3f}; "
          f"90% coverage {i['cov']:.3f}; the other calibration rule {i['cov_alt']:.3f} in distribution, "
          f"{summary[(unseen, 'all')]['cov_alt']:.3f} unseen)")


def plot(rows, path, splits):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, split in zip(axes[:2], splits):
        for m, style in (("mist", "o-"), ("ksg", "s--"), ("cca", "^:")):
            ns = sorted({r["n"] for r in rows})
            mse = [np.mean([(r[m] - r["mi"]) ** 2 for r in rows if r["split"] == split and r["n"] == n]) for n in ns]
            ax.plot(ns, mse, style, label=m.upper())
        ax.set(xscale="log", yscale="log", xlabel="n", ylabel="MSE (nats$^2$)", title=split)
        ax.legend()
    for split in splits:
        ns = sorted({r["n"] for r in rows})
        sel = [[r for r in rows if r["split"] == split and r["n"] == n] for n in ns]
        cov = [np.mean([_covers(r["lo"], r["hi"], r["mi"]) for r in s]) for s in sel]
        line = axes[2].plot(ns, cov, "o-", label=f"{split} (all)")[0]
        cc = [np.mean([_covers(r["lo"], r["hi"], r["mi"]) for r in s if r["hi"] is not None] or [np.nan]) for s in sel]
        axes[2].plot(ns, cc, "x--", color=line.get_color(), label=f"{split} (closed only)")
    axes[2].axhline(0.9, color="k", lw=0.8)
    low = min([0.5] + [v for ln in axes[2].get_lines() for v in ln.get_ydata() if np.isfinite(v)])
    axes[2].set(xscale="log", ylim=(min(0.5, low - 0.05), 1.0), xlabel="n", ylabel="coverage of the 90% interval")
    axes[2].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nfigure written to {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 task per (family, n), fewer timing repeats")
    ap.add_argument("--reps", type=int, default=None, help="tasks per (family, n) cell (default 3; quick 1)")
    ap.add_argument("--weights", default=mist.DEFAULT_WEIGHTS)
    ap.add_argument("--plot", default=None, help="write a PNG of MSE and coverage versus n (needs matplotlib)")
    ap.add_argument("--json", default=None, help="write the per-set records as JSON")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--grids", choices=("auto", "v1", "v2"), default="auto",
                    help="test grids of the first or second meta-prior (auto: the one the weights were trained on); "
                         "--weights mist-medium --grids v2 runs the previous weights on the new grids")
    ap.add_argument("--d-max", type=int, default=None,
                    help="draw dx, dy from 1..D (default: the weights' d_max); the grids of a smaller D are the "
                         "same sets for every weights, so runs of two weights with the same D compare directly")
    ap.add_argument("--timings-only", action="store_true",
                    help="only the timing table, for --weights and then mist-medium in the same run")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    reps = a.reps or (1 if a.quick else 3)
    pre = mist.load_pretrained(a.weights)
    if a.timings_only:
        t = {}
        for name in dict.fromkeys((a.weights, "mist-medium")):
            print(f"\n{name}:")
            t[name] = timings(mist.load_pretrained(name), repeats=7, infonce_samples=0)
        if len(t) == 2:
            print("\nper-estimate time ratio " + ", ".join(
                f"n={n}: {t[a.weights][n]['mist_ms'] / t['mist-medium'][n]['mist_ms']:.2f}x" for n in t[a.weights]))
        return
    cfg = pre.config
    d_max = a.d_max or cfg.d_max
    if d_max > cfg.d_max:
        raise SystemExit(f"--d-max {d_max} exceeds the weights' d_max {cfg.d_max}")
    print(f"calibration rules: default {pre.rule()!r}, other {_other_rule(pre)!r}")
    print(f"MIST weights {pre.name} (sha256 {pre.sha256[:16]}...), d_max={cfg.d_max}, n in [{cfg.n_min}, {cfg.n_max}] "
          f"(larger n: subsample-and-combine), norm={cfg.norm}; grids: dx, dy in 1..{d_max}, n in {N_VALUES}, "
          f"{reps} task(s) per cell")
    t0 = time.time()
    v2 = a.grids == "v2" or (a.grids == "auto" and pre.train_split == "train_v2")
    splits = ("test_imd_v2", "test_unseen_v2") if v2 else ("test_imd", "test_unseen")
    rows = []
    for split in splits:
        rows += run_grid(split, N_VALUES, reps, pre, d_max)
    low = run_grid(splits[1], N_VALUES[2:7], reps, pre, 3)
    print(f"(grids evaluated in {time.time() - t0:.0f} s; {sum(r['extrapolation'] for r in rows)} of {len(rows)} "
          f"estimates above the training-MI 99th percentile {pre.trained_mi_q99} nats, i.e. flagged as extrapolation; "
          f"{sum(r['opened'] for r in rows)} intervals opened above by the range check, "
          f"{sum(r['opened_alt'] for r in rows)} with the other rule)")
    summary = print_tables(rows, splits)
    worst_low = low_dim_table(low)
    indep = independence(pre, 10 if a.quick else 20)
    times = timings(pre, repeats=3 if a.quick else 7, infonce_samples=1 if a.quick else 2)
    goals(summary, times, splits, worst_low, indep)
    if a.plot:
        plot(rows, a.plot, splits)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"grids": rows, "low_dim": low, "independence": indep}, f)


if __name__ == "__main__":
    main()
