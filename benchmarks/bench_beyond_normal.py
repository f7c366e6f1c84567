"""MIST versus KSG and CCA on the "Beyond Normal" benchmark tasks (Czyż et al., NeurIPS 2023).

Tasks: every task of :mod:`benchmarks.beyond_normal` (``TASKS``: the 39 tasks of bmi's
``BENCHMARK_TASKS_LIST`` with ``dx, dy <= 32``; only the 50 x 50 dense multinormal is left out),
each with its closed-form true MI. For every task, every n in ``--n`` (default 100, 1000, 5000) and
every rep ``r < --reps`` (default 5), one sample is drawn with
``numpy.random.default_rng([SEED, task_index, n_index, r])`` (``task_index`` the position in
``TASKS``), in float64, without bmi's column standardisation (MI, MIST and CCA do not change under
it; KSG standardises columns itself). All estimators run on the same sample:

* MIST: ``mist.estimate(x, y, model=weights, seed=0)`` for each of ``--weights`` (comma-separated;
  default ``mist.DEFAULT_WEIGHTS``), default interval calibration: the median (``value``) and the
  90% interval. An interval the range check opened above (``upper is None``, with a
  ``MISTRangeWarning``) covers iff ``lower <= MI``; warnings are caught and counted by category, not
  printed. Samples above the weights' ``n_max`` go through subsample-and-combine (blocks);
* KSG: estimator 1, k = 5, max-norm, on the full X and Y blocks (``baselines.ksg_mi``), reported as
  max(0, KSG);
* CCA: Gaussian MI of the sample canonical correlations, correlation shrinkage 1e-3
  (``baselines.cca_mi``).

Printed: a per-task table over all tasks (truth; mean estimate and MAE of every estimator; MIST's
90% coverage and opened intervals), then summaries per n and over all n: MAE of MIST, KSG and CCA,
the ratio MAE(MIST) / MAE(KSG), MIST's 90% coverage and the number of opened intervals. MAE is the
mean over sets of ``|estimate - MI|`` (nats); every task has the same number of sets per n, so
every task counts equally. Sets on which some weights give no estimate (outside their domain:
``dx`` or ``dy`` above ``d_max``, n below ``n_min``) are counted and left out of the summaries for
every estimator, so all columns average the same sets; the per-task table shows each weights on the
sets it could estimate. Finally milliseconds per MIST estimate (median over sets, per n; wall
clock on this machine, ``--threads`` torch threads, weights loaded and warmed up beforehand).

Rank equivalence: tasks obtained from one another by coordinate-wise strictly increasing maps
(normal CDF, half-cube, wiggly, asinh, the bimodal inverse CDFs) share a ``base``. MIST reads only
per-column ranks (normal scores), so on such tasks it sees the same information (up to the
different seeds), while bmi's list contains five copies of the bivariate normal. The summaries
therefore count each rank-equivalence class once, through its untransformed task
(``unique_by_rank``: 25 of the 39 tasks; the spiral and Swiss-roll tasks mix coordinates and are
classes of their own). The per-task table lists all 39, and a reference line gives the all-task
MAE; KSG and CCA, which are not rank-invariant, differ across a class.

Held out: none of these tasks, their parameters or their samples was used to train, validate or
calibrate MIST (nothing in the ``pyromi`` package reads ``benchmarks/``; the training, validation
and calibration sets are drawn by :mod:`pyromi.mist.families` and :mod:`pyromi.mist.structures`).
This is not an out-of-family test, though: the training meta-prior contains structures modelled on
bmi's families (Gaussian dense / sparse / 2-pair / latent-variable covariances, multivariate
Student-t with ``nu`` in [1, 10], additive uniform noise with ``e`` in [0.1, 2]) and half-cube,
asinh and wiggly transforms, with randomly drawn parameters (and a random column permutation and
affine map per set). Not in training: the normal-CDF and bimodal maps (irrelevant to a rank-based
estimator), the Swiss roll, and the spiral (a test-only transform). The tasks' parameter values
(dense correlation 0.5, 2-pair strength 2, df 1, 2 and 3, noise 0.1 and 0.75) are points inside,
or at the edge of, those priors.

    python benchmarks/bench_beyond_normal.py [--quick] [--reps 5] [--n 100,1000,5000]
        [--weights mist-medium[,other...]] [--tasks SUBSTRING] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from collections import Counter

import numpy as np
import torch

from pyromi import baselines, mist
from pyromi.errors import PyromiError

SEED = 20231
N_VALUES = (100, 1000, 5000)
N_VALUES_QUICK = (100, 1000)


def _covers(lo, hi, mi) -> bool:
    """Whether ``[lo, hi]`` holds ``mi``; ``hi is None`` (opened by the range check) is unbounded above."""
    return bool(lo <= mi and (hi is None or mi <= hi))


def _mist_record(x, y, pre) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        try:
            e = mist.estimate(x, y, model=pre, seed=0)
        except PyromiError as err:  # outside the weights' domain (dx, dy > d_max or n < n_min)
            return dict(value=None, lo=None, hi=None, opened=False, covers=None, ms=None, blocks=None,
                        warnings={}, error=str(err))
        ms = 1e3 * (time.perf_counter() - t0)
    return dict(value=e.value, lo=e.lower, hi=e.upper, opened=e.upper is None, covers=None, ms=ms,
                blocks=e.diagnostics["blocks"], extrapolation=bool(e.diagnostics["extrapolation"]),
                warnings=dict(Counter(w.category.__name__ for w in caught)), error=None)


def run(tasks: dict, uniq: set, n_values, reps: int, pres: dict) -> list[dict]:
    rows = []
    names = list(tasks)
    t_start = time.time()
    for ti, (name, t) in enumerate(tasks.items()):
        for ni, n in enumerate(n_values):
            for rep in range(reps):
                x, y = t.sample(n, np.random.default_rng([SEED, ti, ni, rep]))
                rec = dict(task=name, task_index=ti, base=t.base, family=t.family, unique=name in uniq, n=n,
                           n_index=ni, rep=rep, dx=t.dx, dy=t.dy, mi=t.mi, mist={})
                for w, pre in pres.items():
                    m = _mist_record(x, y, pre)
                    if m["value"] is not None:
                        m["covers"] = _covers(m["lo"], m["hi"], t.mi)
                    rec["mist"][w] = m
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    t0 = time.perf_counter()
                    rec["ksg"] = max(0.0, baselines.ksg_mi(x, y, k=5))
                    rec["t_ksg"] = time.perf_counter() - t0
                rec["ksg_warnings"] = dict(Counter(w.category.__name__ for w in caught))
                rec["cca"] = baselines.cca_mi(x, y, shrinkage=1e-3)
                rows.append(rec)
        print(f"  [{ti + 1}/{len(names)}] {name} done ({time.time() - t_start:.0f} s)", file=sys.stderr, flush=True)
    return rows


def _usable(rows: list[dict], weights) -> list[dict]:
    """Sets on which every weights returned an estimate (so all columns average the same sets)."""
    return [r for r in rows if all(r["mist"][w]["value"] is not None for w in weights)]


def _stats(rows: list[dict], weights) -> dict:
    mi = np.array([r["mi"] for r in rows])
    out = {"sets": len(rows), "tasks": len({r["task"] for r in rows})}
    for m in ("ksg", "cca"):
        est = np.array([r[m] for r in rows])
        out[f"mean_{m}"] = float(np.mean(est))
        out[f"mae_{m}"] = float(np.mean(np.abs(est - mi)))
    for w in weights:
        est = np.array([r["mist"][w]["value"] for r in rows])
        out[f"mean_{w}"] = float(np.mean(est))
        out[f"mae_{w}"] = float(np.mean(np.abs(est - mi)))
        out[f"cov_{w}"] = float(np.mean([r["mist"][w]["covers"] for r in rows]))
        out[f"opened_{w}"] = int(sum(r["mist"][w]["opened"] for r in rows))
        out[f"ratio_{w}"] = out[f"mae_{w}"] / out["mae_ksg"] if out["mae_ksg"] > 0 else math.inf
    return out


def print_per_task(rows: list[dict], weights, n_values) -> None:
    print("\n### per task (all tasks; * = counted in the rank-unique summary)\n")
    head = "| task | dx x dy | n | truth |"
    sep = "|---|---|---|---|"
    for w in weights:
        head += f" {w} mean | {w} MAE | {w} 90% cover | {w} opened |"
        sep += "---|---|---|---|"
    head += " KSG mean | KSG MAE | CCA mean | CCA MAE |"
    sep += "---|---|---|---|"
    print(head)
    print(sep)
    for name in dict.fromkeys(r["task"] for r in rows):
        for n in n_values:
            sel = [r for r in rows if r["task"] == name and r["n"] == n]
            if not sel:
                continue
            r0 = sel[0]
            line = f"| {name}{' *' if r0['unique'] else ''} | {r0['dx']}x{r0['dy']} | {n} | {r0['mi']:.3f} |"
            for w in weights:  # each weights over the sets it could estimate (all, inside its domain)
                ok = _usable(sel, [w])
                if not ok:
                    line += " - | - | - | - |"
                else:
                    s = _stats(ok, [w])
                    line += (f" {s[f'mean_{w}']:.3f} | {s[f'mae_{w}']:.3f} | {s[f'cov_{w}']:.2f} | "
                             f"{s[f'opened_{w}']}/{len(ok)} |")
            s_all = _stats(sel, [])
            line += (f" {s_all['mean_ksg']:.3f} | {s_all['mae_ksg']:.3f} | {s_all['mean_cca']:.3f} | "
                     f"{s_all['mae_cca']:.3f} |")
            print(line)


def print_summary(rows: list[dict], weights, n_values, title: str) -> dict:
    print(f"\n### {title}\n")
    head = "| n | tasks | sets |" + "".join(f" MAE {w} |" for w in weights) + " MAE KSG | MAE CCA |"
    head += "".join(f" {w}/KSG |" for w in weights) + "".join(f" {w} 90% cover | {w} opened |" for w in weights)
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    out = {}
    for label, sel in [(str(n), [r for r in rows if r["n"] == n]) for n in n_values] + [("all", rows)]:
        if not sel:
            continue
        s = _stats(sel, weights)
        out[label] = s
        line = f"| {label} | {s['tasks']} | {s['sets']} |" + "".join(f" {s[f'mae_{w}']:.3f} |" for w in weights)
        line += f" {s['mae_ksg']:.3f} | {s['mae_cca']:.3f} |" + "".join(f" {s[f'ratio_{w}']:.2f} |" for w in weights)
        line += "".join(f" {s[f'cov_{w}']:.3f} | {s[f'opened_{w}']} |" for w in weights)
        print(line)
    return out


def print_timings(rows: list[dict], weights, n_values) -> dict:
    print("\n### MIST milliseconds per estimate (median over all sets of each n)\n")
    print("| n |" + "".join(f" {w} ms | {w} blocks |" for w in weights))
    print("|---|" + "---|---|" * len(weights))
    out = {}
    for n in n_values:
        line = f"| {n} |"
        for w in weights:
            ms = [r["mist"][w]["ms"] for r in rows if r["n"] == n and r["mist"][w]["ms"] is not None]
            bl = sorted({r["mist"][w]["blocks"] for r in rows if r["n"] == n and r["mist"][w]["blocks"]})
            med = statistics.median(ms) if ms else float("nan")
            out[(n, w)] = med
            line += f" {med:.1f} | {','.join(map(str, bl)) or '-'} |"
        print(line)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"2 reps, n in {N_VALUES_QUICK}")
    ap.add_argument("--reps", type=int, default=None, help="samples per (task, n) (default 5; quick 2)")
    ap.add_argument("--n", default=None, help=f"comma-separated sample sizes (default {N_VALUES}; quick {N_VALUES_QUICK})")
    ap.add_argument("--weights", default=mist.DEFAULT_WEIGHTS,
                    help="MIST weights name(s), comma-separated; each runs on the same samples")
    ap.add_argument("--tasks", default=None, help="only tasks whose name contains this substring (for development)")
    ap.add_argument("--json", default=None, help="write the per-set records as JSON")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    reps = a.reps or (2 if a.quick else 5)
    n_values = tuple(int(v) for v in a.n.split(",")) if a.n else (N_VALUES_QUICK if a.quick else N_VALUES)
    weights = list(dict.fromkeys(w.strip() for w in a.weights.split(",") if w.strip()))
    if not weights:
        raise SystemExit("--weights names no weights")

    import beyond_normal as bn  # benchmarks/ is on sys.path when this script runs
    tasks = dict(bn.TASKS)
    if a.tasks:
        tasks = {k: t for k, t in tasks.items() if a.tasks in k}
        if not tasks:
            raise SystemExit(f"no task name contains {a.tasks!r}")
    # unique_by_rank of the full list, so a --tasks filter keeps the same representatives
    uniq = set(bn.unique_by_rank(bn.TASKS)) & set(tasks)

    pres = {}
    for w in weights:
        pre = mist.load_pretrained(w)
        cfg = pre.config
        x0, y0 = np.random.default_rng(0).standard_normal((2, 200, 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mist.estimate(x0, y0, model=pre, seed=0)  # warm-up, so the first timing is not an outlier
        pres[w] = pre
        print(f"MIST weights {pre.name} (sha256 {pre.sha256[:16]}...): d_max={cfg.d_max}, n in [{cfg.n_min}, "
              f"{cfg.n_max}] (larger n: blocks), training-MI q99 {pre.trained_mi_q99} nats")
    print(f"Beyond Normal: {len(tasks)} tasks ({len(uniq)} rank-unique; skipped {sorted(bn.SKIPPED)}), n in {n_values}, "
          f"{reps} rep(s), seed {SEED}, {a.threads} torch thread(s)")

    t0 = time.time()
    rows = run(tasks, uniq, n_values, reps, pres)
    elapsed = time.time() - t0
    usable = _usable(rows, weights)
    for w in weights:
        bad = [r for r in rows if r["mist"][w]["value"] is None]
        if bad:
            print(f"note: {w} gave no estimate on {len(bad)} sets of {len({r['task'] for r in bad})} tasks (outside "
                  f"its domain, e.g. {bad[0]['task']} n={bad[0]['n']}: {bad[0]['mist'][w]['error'].split(';')[0]}); "
                  "the summaries leave these sets out for every estimator")
        wc = Counter()
        for r in rows:
            wc.update(r["mist"][w]["warnings"])
        ext = sum(bool(r["mist"][w].get("extrapolation")) for r in rows)
        print(f"{w}: warnings caught {dict(wc) or 'none'}; {sum(r['mist'][w]['opened'] for r in rows)} of {len(rows)} "
              f"intervals opened above by the range check; {ext} medians above the training-MI q99")
    kc = Counter()
    for r in rows:
        kc.update(r["ksg_warnings"])
    print(f"KSG warnings caught: {dict(kc) or 'none'}; all sets evaluated in {elapsed:.0f} s")

    print_per_task(rows, weights, n_values)
    uniq_rows = [r for r in usable if r["unique"]]
    print_summary(uniq_rows, weights, n_values,
                            f"summary: rank-unique tasks ({len({r['task'] for r in uniq_rows})}), each counted once")
    print_summary(usable, weights, n_values,
                        "for reference: all tasks, rank-equivalent ones counted separately")
    print_timings(rows, weights, n_values)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, default=lambda o: o.item() if isinstance(o, np.generic) else str(o))
        print(f"\n{len(rows)} per-set records written to {a.json}")


if __name__ == "__main__":
    main()
