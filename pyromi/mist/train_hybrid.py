"""Fit, cross-fit, calibrate and export the hybrid MIST head (:mod:`pyromi.mist.hybrid`).

    python -m pyromi.mist.hybrid_data --out DIR --worker 0 --count 40000   # meta-data (per worker)
    python -m pyromi.mist.train_hybrid --data DIR --export mist-hybrid     # fit + calibrate + export

**Fit** (:func:`fit`): pinball loss at ``taus_per_set`` random levels per set on the nats scale
plus the same loss on the ``log(1 + I)`` scale (as :mod:`pyromi.mist.train`), AdamW, cosine
learning rate, a fixed number of epochs. The set network (``mist-medium``) stays frozen.

**Leave-group-out cross-fits** (:func:`cross_fit_ensemble`): the training families are grouped
by base structure (:data:`GROUPS`) and, separately, by marginal transform (base, half-cube, asinh,
wiggly, flow); for each group a head is fitted on the other groups and predicts the held-out one.
These out-of-group quantiles are what an unseen family looks like to the head: a new kind of
dependence, or a known one behind a new kind of marginal map.

**Calibration** (:func:`calibrate`): split-conformal scales of the median-to-end distances
(``log(1 + I)`` scale) per level and n-bin. A set's conformity ratio is the larger of its two
out-of-group ratios (structure held out, transform held out); ``scales`` is the conformal quantile
of all of them (the default rule, ``"pooled"``), ``scales_family_robust`` the largest per-group
quantile (every held-out group covered at the nominal level; far wider). Because every set was
predicted by heads that never saw its structure, or its transform, the scales are fitted to a
change of family, not only to the meta-prior.

**Export** (:func:`export`): ``weights/<name>.pt`` holds the set network's state and config and
the head's (``hybrid``), all plain tensors and values (``torch.load(weights_only=True)``);
``<name>.json`` the SHA-256, configs, the training summary with the cross-fit errors, the
calibration, and the training MI's 99th percentile overall and per shape (``train_v2`` prior).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import os
import time

import numpy as np
import torch

from . import families as fam
from .hybrid import (KAPPA, HybridConfig, HybridEnsemble, HybridHead, anchor, combine_members, member_columns,
                     strata)
from .train import CAL_EDGES, CAL_LEVELS, _conformal_scale, conformity_ratios, pinball

#: base-structure groups of the leave-structure-out cross-fit
GROUPS = {
    "gauss-bmi": ("gauss-dense", "gauss-sparse", "gauss-2pair", "gauss-lvm"),
    "student-bmi": ("student-dense", "student-sparse", "student-2pair", "student-lvm"),
    "additive": ("additive",),
    "pairs": ("gauss-pairs", "student-pairs"),
    "curve": ("curve",),
}
#: smallest scale used to standardise an input column
STD_FLOOR = 0.1
#: draws per shape of the per-shape training-MI table (528 shapes at d_max = 32)
SHAPE_DRAWS = 1000
#: the ensemble's members: one head reads the set network's quantiles, the other only classical
#: statistics (both read the set features and the KSG statistics)
MEMBERS = (HybridConfig(use_base_quantiles=True), HybridConfig(use_base_quantiles=False))
FIT = dict(epochs=30, batch=512, lr=2e-3, weight_decay=1e-4, taus_per_set=8, log1p_weight=1.0, seed=1)


def group_of(family: str) -> str:
    structure = fam.parse_family(family)[0]
    for g, members in GROUPS.items():
        if structure in members:
            return g
    raise ValueError(f"{family} is in no cross-fit group")


def load(data_dir: str, split: str = "train_v2") -> dict:
    """Concatenate the parts written by :mod:`pyromi.mist.hybrid_data`."""
    parts = sorted(glob.glob(os.path.join(data_dir, f"part-{split}-*.npz")))
    if not parts:
        raise FileNotFoundError(f"no part-{split}-*.npz in {data_dir}")
    ds = [np.load(p, allow_pickle=False) for p in parts]
    out = {k: np.concatenate([d[k] for d in ds]) for k in ds[0].files}
    out["group"] = np.array([group_of(f) for f in out["family"]])
    out["transform"] = np.array([fam.parse_family(f)[1] for f in out["family"]])
    return out


def fit(inputs: np.ndarray, mi: np.ndarray, cfg: HybridConfig, opts: dict = FIT, log=None,
        anchors: np.ndarray | None = None) -> HybridHead:
    """A head fitted on ``inputs`` ``(N, num_inputs)`` and true MI ``mi`` ``(N,)``, with output
    offsets ``anchors`` ``(N, 1)`` (:func:`~pyromi.mist.hybrid.anchor`; none if ``None``)."""
    gen = torch.Generator().manual_seed(opts["seed"])
    # a floor on the scale: a column that is (nearly) constant in training -- e.g. the 30th canonical
    # pair, zero unless both sides have 30 columns -- must not blow up when it moves at test time
    mean, std = inputs.mean(0), np.maximum(inputs.std(0), STD_FLOOR)
    cfg = HybridConfig.from_dict({**cfg.to_dict(), "feature_mean": mean.tolist(), "feature_std": std.tolist()})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts["seed"])
        head = HybridHead(cfg)
    X = torch.as_tensor(inputs, dtype=torch.float32)
    T = torch.as_tensor(mi, dtype=torch.float32)[:, None]
    A = torch.zeros(len(X), 1) if anchors is None else torch.as_tensor(anchors, dtype=torch.float32)
    opt = torch.optim.AdamW(head.parameters(), lr=opts["lr"], weight_decay=opts["weight_decay"])
    steps_per_epoch = math.ceil(len(X) / opts["batch"])
    total = opts["epochs"] * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opts["lr"], total_steps=total, pct_start=0.05)
    head.train()
    for ep in range(opts["epochs"]):
        perm = torch.randperm(len(X), generator=gen)
        tot = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * opts["batch"] : (i + 1) * opts["batch"]]
            taus = torch.rand(len(idx), opts["taus_per_set"], generator=gen).clamp(1e-3, 1 - 1e-3)
            u = head.raw(X[idx], taus, A[idx]).clamp(max=8.0)  # unbounded below: quantiles at the atom I = 0
            t = T[idx]
            loss = pinball(t, torch.expm1(u), taus).mean() + opts["log1p_weight"] * pinball(torch.log1p(t), u, taus).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += float(loss)
        if log is not None:
            log(f"epoch {ep + 1}: loss {tot / steps_per_epoch:.4f}")
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return head


def predict(head: HybridHead, inputs: np.ndarray, taus, anchors: np.ndarray | None = None) -> np.ndarray:
    """Quantiles of ``log(1 + I)`` ``(N, K)``."""
    with torch.no_grad():
        a = None if anchors is None else torch.as_tensor(anchors, dtype=torch.float32)
        return head.log1p_quantiles(torch.as_tensor(inputs, dtype=torch.float32),
                                    torch.as_tensor(np.asarray(taus), dtype=torch.float32), a).double().numpy()


def anchors_of(data: dict, full: HybridConfig, d_max: int) -> np.ndarray:
    """:func:`~pyromi.mist.hybrid.anchor` of every set ``(N, 1)``."""
    return anchor(torch.as_tensor(data["inputs"], dtype=torch.float64), full, d_max).numpy()


def cal_taus() -> np.ndarray:
    return np.array(sorted({0.5} | {(1 - v) / 2 for v in CAL_LEVELS} | {(1 + v) / 2 for v in CAL_LEVELS}))


def cross_fit(data: dict, cfg: HybridConfig, opts: dict = FIT, log=print, columns=None, key: str = "group",
              anchors: np.ndarray | None = None) -> np.ndarray:
    """Out-of-group quantiles ``(N, len(cal_taus()))`` (``log(1 + I)`` scale) of one head reading
    ``columns`` of the inputs (default all); groups are the values of ``data[key]`` (structure
    groups, or ``"transform"``)."""
    taus = cal_taus()
    X = data["inputs"] if columns is None else data["inputs"][:, columns]
    out = np.zeros((len(data["mi"]), len(taus)))
    for g in np.unique(data[key]):
        k = data[key] == g
        if not k.any():
            continue
        t0 = time.time()
        a_fit, a_out = (None, None) if anchors is None else (anchors[~k], anchors[k])
        head = fit(X[~k], data["mi"][~k], cfg, opts, anchors=a_fit)
        out[k] = predict(head, X[k], taus, a_out)
        err = np.abs(np.expm1(out[k][:, np.argmin(np.abs(taus - 0.5))]) - data["mi"][k]).mean()
        log(f"held-out {g}: {k.sum()} sets, MAE {err:.3f} nats ({time.time() - t0:.0f} s)")
    return out


def cross_fit_ensemble(data: dict, full: HybridConfig, members=MEMBERS, opts: dict = FIT, d_max: int = 32,
                       kappa: float = KAPPA, log=print, key: str = "group") -> tuple[np.ndarray, list[np.ndarray]]:
    """Out-of-group quantiles of the ensemble (:func:`~pyromi.mist.hybrid.combine_members` of the
    members' out-of-group quantiles) and of each member, groups ``data[key]``."""
    per = []
    for m in members:
        log(f"member use_base_quantiles={m.use_base_quantiles}, held out by {key}:")
        per.append(cross_fit(data, m, opts, log, member_columns(m, full, d_max), key, anchors_of(data, full, d_max)))
    q = combine_members(torch.as_tensor(np.stack(per)), torch.as_tensor(cal_taus()), kappa).numpy()
    return q, per


def _side_ratios(oof: np.ndarray, T: np.ndarray, lev: float) -> tuple[np.ndarray, np.ndarray]:
    """Upper- and lower-end conformity ratios of the ``lev`` interval of one out-of-group prediction
    (:func:`~pyromi.mist.train.conformity_ratios`)."""
    taus = cal_taus()
    m = oof[:, int(np.argmin(np.abs(taus - 0.5)))]
    lo = oof[:, np.argmin(np.abs(taus - (1 - lev) / 2))]
    hi = oof[:, np.argmin(np.abs(taus - (1 + lev) / 2))]
    return conformity_ratios(T, m, lo, hi)


#: strata of ``dx + dy`` and of the predicted median (nats) for the one-sided scales
DIMS_EDGES = (2, 5, 17)
MEDIAN_EDGES = (0.0, 0.3, 1.5)
#: a stratum with fewer sets than this takes the scale of its n-bin and dims stratum
MIN_STRATUM = 200


def _one_sided(oofs: list[np.ndarray], T: np.ndarray, lev: float, side: str) -> np.ndarray:
    """One-sided conformity ratios of the ``side`` end of the ``lev`` interval: ``(u - m) / (hi - m)``
    (upper) or ``(m - u) / (m - lo)`` (lower), the largest over the groupings."""
    i = 0 if side == "upper" else 1
    return np.max([_side_ratios(o, T, lev)[i] for o in oofs], axis=0)


def calibrate(oofs: list[np.ndarray], data: dict, n_max: int, n_min: int = 10) -> dict:
    """Conformal interval scales per level and n-bin from out-of-group quantiles (see the module
    docstring). ``oofs``: one array per kind of held-out grouping (structure groups, transforms);
    a set's conformity ratio is the largest over them (the novelty that hurts it most).
    ``raw_coverage`` is the uncalibrated coverage of the first grouping's held-out sets."""
    T = np.log1p(data["mi"])
    N = data["n"]
    labels = [data["group"], data["transform"]]
    edges = [n_min] + [e for e in CAL_EDGES if n_min < e <= n_max] + [n_max + 1]
    out: dict = {"levels": list(CAL_LEVELS), "n_edges": edges, "scales": [], "scales_family_robust": [],
                 "raw_coverage": [], "num_sets": int(len(T)), "default_rule": "pooled",
                 "method": ("cross-conformal on out-of-group predictions, held out by structure group ("
                            + ", ".join(GROUPS) + ") and by transform; per set the larger conformity ratio")}
    taus = cal_taus()
    for lev in CAL_LEVELS:
        r = np.maximum(_one_sided(oofs, T, lev, "upper"), _one_sided(oofs, T, lev, "lower"))
        o = oofs[0]
        cov = (o[:, np.argmin(np.abs(taus - (1 - lev) / 2))] <= T) & (T <= o[:, np.argmin(np.abs(taus - (1 + lev) / 2))])
        sc, sf, rc = [], [], []
        for a, b in zip(edges[:-1], edges[1:]):
            k = (N >= a) & (N < b)
            sc.append(_conformal_scale(r[k], lev))
            sf.append(max(_conformal_scale(r[k & (lab == g)], lev) for lab in labels for g in np.unique(lab[k])))
            rc.append(float(cov[k].mean()))
        out["scales"].append(sc)
        out["scales_family_robust"].append(sf)
        out["raw_coverage"].append(rc)
    # the pooled rule, one-sided and stratified (Mondrian conformal) by n-bin, dx + dy and the
    # predicted median: each end of a level-l interval at its own (1 + l) / 2 conformal quantile, so
    # misses need not split evenly between the ends (on unseen families the truth lies above far
    # more often); high-dimensional samples, where dependence can hide from every statistic, and
    # large predicted MI, where errors grow, get their own scales
    D = data["dx"] + data["dy"]
    mid = int(np.argmin(np.abs(cal_taus() - 0.5)))
    M = np.expm1(np.mean([o[:, mid] for o in oofs], axis=0))
    out["dims_edges"], out["median_edges"] = list(DIMS_EDGES), list(MEDIAN_EDGES)
    sb, sc_, se = strata(out, N, D, M)
    for side in ("upper", "lower"):
        tab = []
        for lev in CAL_LEVELS:
            r = _one_sided(oofs, T, lev, side)
            q = (1 + lev) / 2
            row = []
            for b in range(len(edges) - 1):
                cells = []
                for c in range(len(DIMS_EDGES)):
                    k = (sb == b) & (sc_ == c)
                    fallback = _conformal_scale(r[k], q)
                    cells.append([_conformal_scale(r[k & (se == e)], q) if (k & (se == e)).sum() >= MIN_STRATUM
                                  else fallback for e in range(len(MEDIAN_EDGES))])
                row.append(cells)
            tab.append(row)
        out[f"scales_{side}"] = tab
    out["combine_gamma"] = out["combine_gamma_family_robust"] = 0.5
    out["held_out_coverage90"] = held_out_coverage(oofs, data, out)
    return out


def held_out_coverage(oofs: list[np.ndarray], data: dict, cal: dict, level: float = 0.9) -> dict:
    """Coverage of the calibrated ``level`` interval (pooled rule) on each held-out group's
    out-of-group predictions (in-sample for the scales: a check that no group is left far below)."""
    T = np.log1p(data["mi"])
    li = cal["levels"].index(level)
    mid = int(np.argmin(np.abs(cal_taus() - 0.5)))
    M = np.expm1(np.mean([o[:, mid] for o in oofs], axis=0))
    b, c, e = strata(cal, data["n"], data["dx"] + data["dy"], M)
    ok = np.ones(len(T), bool)
    for side in ("upper", "lower"):
        ok &= _one_sided(oofs, T, level, side) <= np.asarray(cal[f"scales_{side}"])[li][b, c, e]
    return {str(g): round(float(ok[lab == g].mean()), 4) for lab in (data["group"], data["transform"]) for g in np.unique(lab)}


def export(base_name: str, ens: HybridEnsemble, name: str, calibration: dict, summary: dict, dest: str | None = None,
           shape_q99: list | None = None, q99: float | None = None) -> dict:
    """Write ``<dest>/<name>.pt`` and ``<name>.json`` (see the module docstring)."""
    from . import WEIGHTS_DIR, load_pretrained

    dest = dest or str(WEIGHTS_DIR)
    base = load_pretrained(base_name)
    state = {
        "model": {k: v.clone() for k, v in base.net.state_dict().items()},
        "config": base.config.to_dict(),
        "hybrid": {
            "config": ens.cfg.to_dict(),
            "kappa": ens.kappa,
            "members": [{"config": h.cfg.to_dict(), "model": {k: v.clone() for k, v in h.state_dict().items()}}
                        for h in ens.heads],
        },
    }
    pt = os.path.join(dest, f"{name}.pt")
    torch.save(state, pt)
    sha = hashlib.sha256(open(pt, "rb").read()).hexdigest()
    d_max = base.config.d_max
    meta = {
        "name": name,
        "sha256": sha,
        "config": base.config.to_dict(),
        "hybrid_config": {k: v for k, v in ens.cfg.to_dict().items() if k not in ("feature_mean", "feature_std")},
        "hybrid_members": [{k: v for k, v in h.cfg.to_dict().items() if k not in ("feature_mean", "feature_std")}
                           for h in ens.heads],
        "hybrid_kappa": ens.kappa,
        "train_split": "train_v2",
        "trained_mi_q99": q99 if q99 is not None else round(fam.mi_quantile(fam.SPLITS["train_v2"], d_max), 2),
        "trained_mi_q99_by_shape": shape_q99 if shape_q99 is not None else np.round(
            fam.mi_quantile_by_shape(fam.SPLITS["train_v2"], d_max, draws=SHAPE_DRAWS), 2).tolist(),
        "trained_mi_q99_by_shape_draws": SHAPE_DRAWS,
        "training": summary,
        "calibration": calibration,
    }
    with open(os.path.join(dest, f"{name}.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pyromi.mist.train_hybrid")
    ap.add_argument("--data", required=True)
    ap.add_argument("--base", default="mist-medium")
    ap.add_argument("--export", default=None, metavar="NAME")
    ap.add_argument("--epochs", type=int, default=FIT["epochs"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dest", default=None, help="weights directory (default: the package's)")
    ap.add_argument("--recalibrate", action="store_true",
                    help="only recompute the calibration of <dest>/<export>.json from <dest>/cross_fit.npz")
    ap.add_argument("--ranges", default=None, metavar="JSON",
                    help="precomputed training-MI range {'q99': ..., 'table': ...} (else drawn at export, minutes)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from . import WEIGHTS_DIR, load_pretrained

    base = load_pretrained(a.base)
    d_max = base.config.d_max
    data = load(a.data)
    opts = {**FIT, "epochs": a.epochs}
    full = HybridConfig(base_dim=2 * base.config.dim, use_embedding=False)
    print(f"{len(data['mi'])} sets; groups", {g: int((data["group"] == g).sum()) for g in GROUPS})
    if a.recalibrate:
        dest = a.dest or str(WEIGHTS_DIR)
        cf = np.load(os.path.join(dest, "cross_fit.npz"))
        cal = calibrate([cf["oof_structure"], cf["oof_transform"]], data, base.config.n_max, base.config.n_min)
        path = os.path.join(dest, f"{a.export}.json")
        meta = json.load(open(path))
        meta["calibration"] = cal
        with open(path, "w") as f:
            json.dump(meta, f, indent=1)
        print(json.dumps(cal["held_out_coverage90"]))
        return
    t0 = time.time()
    oof, per = cross_fit_ensemble(data, full, MEMBERS, opts, d_max)
    oof_t, _ = cross_fit_ensemble(data, full, MEMBERS, opts, d_max, key="transform")
    cal = calibrate([oof, oof_t], data, base.config.n_max, base.config.n_min)
    np.savez(os.path.join(a.dest or ".", "cross_fit.npz"), oof_structure=oof, oof_transform=oof_t, taus=cal_taus())
    print(json.dumps({k: cal[k] for k in ("scales", "scales_family_robust", "raw_coverage", "held_out_coverage90")}))
    if a.export:
        A = anchors_of(data, full, d_max)
        heads = [fit(data["inputs"][:, member_columns(m, full, d_max)], data["mi"], m, opts, anchors=A) for m in MEMBERS]
        ens = HybridEnsemble(full, [h.cfg for h in heads], d_max)
        for h, src in zip(ens.heads, heads):
            h.load_state_dict(src.state_dict())
        mid = int(np.argmin(np.abs(cal_taus() - 0.5)))

        def mae(q, g):
            k = data["group"] == g
            return round(float(np.abs(np.expm1(q[k, mid]) - data["mi"][k]).mean()), 4)

        summary = {"sets": int(len(data["mi"])), "fit": opts, "base": a.base,
                   "cross_fit_mae_by_held_out_group": {g: mae(oof, g) for g in GROUPS},
                   "cross_fit_mae_by_held_out_group_members": [{g: mae(q, g) for g in GROUPS} for q in per],
                   "parameters": base.num_parameters + sum(p.numel() for p in ens.parameters()),
                   "head_parameters": sum(p.numel() for p in ens.parameters()), "wall_seconds": round(time.time() - t0)}
        rng_rec = json.load(open(a.ranges)) if a.ranges else {}
        meta = export(a.base, ens, a.export, cal, summary, dest=a.dest, shape_q99=rng_rec.get("table"),
                      q99=rng_rec.get("q99"))
        print(json.dumps({k: meta[k] for k in ("name", "sha256", "trained_mi_q99")}))


if __name__ == "__main__":
    main()
