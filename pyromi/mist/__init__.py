"""MIST: an amortised, learned estimator of I(X; Y) from samples alone, with quantile intervals.

    from pyromi import mist
    est = mist.estimate(x, y)          # x (n, dx), y (n, dy): numpy or torch; dx != dy allowed
    est.value, est.lower, est.upper    # median and a 90% interval (nats); level= to change

Two kinds of shipped weights (``pyromi/mist/weights``, loaded with ``torch.load(weights_only=True)``
after a SHA-256 check):

* ``mist-hybrid`` (the default, :data:`DEFAULT_WEIGHTS`): a permutation-invariant set transformer
  reads the whole sample (after a per-column rank -> normal-score transform) **and** a quantile
  head reads its output beside classical statistics of the same normal scores -- KSG at several
  ``k`` and the Gaussian-copula (CCA) MI -- (:mod:`pyromi.mist.hybrid`). KSG is nearly exact in
  one to three dimensions and sees non-monotone dependence; the set network is far better in many
  dimensions; the head, trained on a wide meta-prior (:data:`pyromi.mist.families.SPLITS`
  ``"train_v2"``: BMI-style Gaussian / Student-t / additive-noise structures, canonical pairs with
  up to 25 nats, non-monotone shared-latent curves, under monotone maps and random normalising
  flows), learns which to trust. Its intervals are calibrated by leave-structure-out
  cross-conformal prediction (:mod:`pyromi.mist.train_hybrid`): every structure group is predicted
  by a head that never saw it, so the interval widths are fitted to a change of family.
* ``mist-medium`` (and ``mist-small``): the set transformer alone, trained on the first meta-prior
  (``"train"``), kept loadable by name for comparison (``model="mist-medium"``).

No density is needed, so MIST also serves implicit simulators and models with intractable
likelihoods.

Supported input domain (the trained range of the shipped weights; see :func:`load_pretrained`):
``1 <= dx, dy <= d_max`` (an error beyond), ``n >= n_min`` (an error below). Samples larger than
``n_max`` are split at random into ``B = ceil(n / n_max)`` near-equal blocks, each block is
encoded and passed through the network in one padded batch, and the block quantiles are combined
on the ``log(1 + I)`` scale (:func:`_combine`): the median is the mean of the block medians, and
the distance from the median to each interval end is the block distance times a factor between
``1`` and ``1 / sqrt(B)``: it shrinks only as far as the spread of the block medians shows
sampling noise, since the network's systematic error is shared by all blocks and does not average
out (and never faster than ``B^-gamma``, ``gamma`` calibrated on validation families).

Range check (:mod:`pyromi.mist.range_check`): when the sample shows more dependence than the
weights were trained on (a 99% lower value of the Gaussian-copula MI, or of KSG on normal scores,
above the training MI's 99th percentile for this ``(dx, dy)`` or above MIST's own 95% quantile:
``x == y``, ``y = x ** 3``, 18 nats in 20 columns, non-monotone relations), :func:`estimate` warns
(:class:`MISTRangeWarning`) and returns the interval unbounded above (``upper = None``).

Randomness: the block split and the range check's row sample use private generators seeded by
``seed`` (default 0), so an estimate is a deterministic function of the sample; torch's and
numpy's global RNGs are never used or changed (loading the weights included).

Interval calibration: the distances from the median to the interval ends (``log(1 + I)`` scale)
are multiplied by conformal factors; the default rule is the one recorded with the weights
(``Pretrained.rule()``). ``mist-hybrid``: ``"pooled"`` (default) -- one-sided factors per stratum of
n, ``dx + dy`` and the predicted MI, fitted on leave-group-out predictions (structure groups and
transforms held out; :func:`pyromi.mist.train_hybrid.calibrate`); ``"family_robust"`` -- per
n-bin the largest factor of any held-out group, for both ends (covers every held-out group; usually
several times wider). ``mist-medium``/``mist-small``: ``"family_robust"`` (default; the largest
per-family factor on validation families) or ``"pooled"`` (one factor; calibrated for the training
meta-prior only; see :func:`pyromi.mist.train.calibrate`).

The interval is a predictive interval under the training meta-prior (quantile regression on the
true MI), not a frequentist confidence interval; its coverage of the true MI was measured on test
families (see ``benchmarks/bench_mist.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._state import warn as _warn
from ..errors import PyromiError, PyromiWarning
from ..result import LearnedEstimate

__all__ = [
    "DEFAULT_WEIGHTS",
    "Pretrained",
    "WeightsError",
    "MISTRangeWarning",
    "load_pretrained",
    "load_checkpoint",
    "quantiles",
    "estimate",
    "estimate_from_samples",
]

#: Name of the shipped checkpoint used by default (``weights/<name>.pt`` and ``<name>.json``).
DEFAULT_WEIGHTS = "mist-hybrid"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_CACHE: dict[str, "Pretrained"] = {}
#: Interval calibration rules (see the module docstring).
CALIBRATION_RULES = ("family_robust", "pooled")


class WeightsError(PyromiError):
    """The MIST weights are missing, corrupt (SHA-256 mismatch) or inconsistent with their config."""


@dataclass
class Pretrained:
    """A loaded MIST network with its configuration and metadata.

    Attributes:
        net: the :class:`~pyromi.mist.model.MISTNet` in eval mode.
        config: its :class:`~pyromi.mist.model.MISTConfig` (``d_max``, ``n_min``, ``n_max``, ``norm``...).
        name: weights name (or the checkpoint path).
        sha256: SHA-256 of the ``.pt`` file.
        meta: the JSON record (training summary, calibration).
    """

    net: Any
    config: Any
    name: str
    sha256: str
    meta: dict = field(default_factory=dict)
    head: Any = None  # the hybrid head (:class:`~pyromi.mist.hybrid.HybridHead`), if the weights have one

    def rule(self, calibration: str | None = None) -> str:
        """The calibration rule to use: ``calibration`` if given, else the weights' default."""
        cal = self.meta.get("calibration", {})
        rule = calibration or cal.get("default_rule", "pooled")
        if rule not in CALIBRATION_RULES:
            raise PyromiError(f"calibration must be one of {CALIBRATION_RULES}, got {calibration!r}")
        if rule == "family_robust" and cal.get("levels") and "scales_family_robust" not in cal:
            raise WeightsError(f"the weights {self.name!r} have no family-robust calibration; pass calibration='pooled'")
        return rule

    def gamma_for(self, calibration: str | None = None) -> float:
        """Exponent of the block-count shrinkage of subsample-and-combine intervals (per rule)."""
        cal = self.meta.get("calibration", {})
        key = "combine_gamma_family_robust" if self.rule(calibration) == "family_robust" else "combine_gamma"
        return float(cal.get(key, cal.get("combine_gamma", 0.5)))

    @property
    def trained_mi_q99(self) -> float:
        """99th percentile of the true MI (nats) over the meta-prior the weights were trained on
        (``train`` families, ``dx, dy ~ U{1..d_max}``), recorded at export. Estimates above it are
        extrapolation: the network has seen almost no such sets, so accuracy and coverage there are
        unmeasured."""
        if "trained_mi_q99" not in self.meta:
            from .families import SPLITS, mi_quantile

            self.meta["trained_mi_q99"] = round(mi_quantile(SPLITS[self.train_split], self.config.d_max), 2)
        return float(self.meta["trained_mi_q99"])

    def trained_mi_q99_for(self, dx: int, dy: int) -> float:
        """99th percentile of the true MI (nats) over the training meta-prior conditional on the
        shape ``{dx, dy}`` (X and Y are swapped at random in training, so the table is symmetric).
        Read from the weights' record (``trained_mi_q99_by_shape``, 4000 draws per shape); for a
        checkpoint without one it is drawn on first use (1000 draws, cached)."""
        a, b = sorted((int(dx), int(dy)))
        table = self.meta.get("trained_mi_q99_by_shape")
        if table is not None and b <= len(table):
            return float(table[a - 1][b - 1])
        cache = self.meta.setdefault("_trained_mi_q99_shape_cache", {})
        if (a, b) not in cache:
            from .families import SPLITS, mi_quantile_shape

            cache[(a, b)] = round(mi_quantile_shape(SPLITS[self.train_split], a, b, draws=1000), 2)
        return float(cache[(a, b)])

    @property
    def num_parameters(self) -> int:
        """Parameters of the set network plus those of the hybrid head, if any."""
        nets = [self.net] + ([self.head] if self.head is not None else [])
        return sum(p.numel() for m in nets for p in m.parameters())

    @property
    def train_split(self) -> str:
        """The family split (:data:`pyromi.mist.families.SPLITS`) the weights were trained on."""
        return str(self.meta.get("train_split", "train"))

    @property
    def gamma(self) -> float:
        """:meth:`gamma_for` the default rule."""
        return self.gamma_for()

    def scale_for(self, level: float, n: int, calibration: str | None = None, *, side: str | None = None,
                  dims: int | None = None, median: float | None = None) -> float:
        """Multiplier of the median-to-end distances (log(1 + I) scale) for an interval of coverage
        ``level`` from a (block) sample of size ``n``: the calibrated scale of n's bin under the rule
        ``calibration`` (default: the weights' default rule), interpolated linearly in the level
        (constant beyond the calibrated levels); 1 when the metadata has no calibration.

        Weights whose pooled rule is one-sided and stratified (``scales_upper``/``scales_lower``,
        indexed by level, n-bin and ``dims = dx + dy`` bin; :func:`pyromi.mist.train_hybrid.calibrate`)
        give the scale of the ``side`` (``"upper"`` or ``"lower"``) end for that stratum (and, where
        the record has ``median_edges``, the stratum of the predicted ``median``, nats)."""
        cal = self.meta.get("calibration", {})
        if not cal.get("levels"):
            return 1.0
        rule = self.rule(calibration)
        edges = cal.get("n_edges", [0, math.inf])
        if rule == "pooled" and side is not None and f"scales_{side}" in cal:
            from .hybrid import strata

            scales = np.asarray(cal[f"scales_{side}"], dtype=np.float64)  # (levels, n-bins, d-bins[, m-bins])
            b, c, e = strata(cal, n, dims if dims is not None else 2, median if median is not None else 0.0)
            col = scales[:, b, c] if scales.ndim == 3 else scales[:, b, c, e]
            return float(np.interp(level, cal["levels"], col))
        key = "scales_family_robust" if rule == "family_robust" else "scales"
        scales = np.asarray(cal[key], dtype=np.float64)  # (levels, bins)
        if scales.ndim == 1:
            scales = scales[:, None]
        b = int(np.clip(np.searchsorted(edges, n, side="right") - 1, 0, scales.shape[1] - 1))
        return float(np.interp(level, cal["levels"], scales[:, b]))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _build(state: dict, name: str, sha: str, meta: dict) -> Pretrained:
    from .model import MISTConfig, MISTNet

    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise WeightsError(f"{name}: expected a dict with 'model' (state_dict) and 'config'; re-export the checkpoint")
    try:
        cfg = MISTConfig.from_dict(dict(state["config"]))
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{name}: the stored config is invalid ({e}); re-export the checkpoint") from None
    with torch.random.fork_rng(devices=[]):  # the random init (overwritten below) must not draw from
        net = MISTNet(cfg)                   # the caller's global generator
    try:
        net.load_state_dict(state["model"], strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{name}: the state_dict does not match its config ({e})") from None
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    head = None
    if "hybrid" in state:
        from .hybrid import HybridConfig, HybridEnsemble

        hy = state["hybrid"]
        try:
            full = HybridConfig.from_dict(dict(hy["config"]))
            members = [HybridConfig.from_dict(dict(m["config"])) for m in hy["members"]]
            with torch.random.fork_rng(devices=[]):
                head = HybridEnsemble(full, members, cfg.d_max, float(hy["kappa"]))
            for h, m in zip(head.heads, hy["members"]):
                h.load_state_dict(m["model"], strict=True)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise WeightsError(f"{name}: the hybrid head does not match its config ({e}); re-export the weights") from None
        if full.use_embedding and full.base_dim != 2 * cfg.dim:
            raise WeightsError(f"{name}: the hybrid head reads a {full.base_dim}-wide embedding, the set network has {2 * cfg.dim}")
        head.eval()
        for p in head.parameters():
            p.requires_grad_(False)
    return Pretrained(net, cfg, name, sha, meta, head)


def load_pretrained(name: str = DEFAULT_WEIGHTS) -> Pretrained:
    """Load shipped weights ``weights/<name>.pt``, verifying the SHA-256 recorded in ``<name>.json``.

    Cached per process. Raises :class:`WeightsError` if either file is missing or the hash differs:
    MIST never falls back to an untrained network.
    """
    if name in _CACHE:
        return _CACHE[name]
    pt, js = WEIGHTS_DIR / f"{name}.pt", WEIGHTS_DIR / f"{name}.json"
    available = sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt")) if WEIGHTS_DIR.exists() else []
    if not pt.exists() or not js.exists():
        raise WeightsError(
            f"MIST weights {name!r} not found ({pt.name} and {js.name} in {WEIGHTS_DIR}); available: "
            f"{available or 'none'}. Reinstall pyromi, or train your own with "
            f"`python -m pyromi.mist.train` and load it with mist.load_checkpoint(path)"
        )
    try:
        meta = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(
            f"MIST weights record {js} is not valid JSON ({type(e).__name__} at {getattr(e, 'pos', '?')}): "
            f"the file is corrupt or was edited. Reinstall pyromi"
        ) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
        raise WeightsError(f"MIST weights record {js} has no SHA-256 entry: the file is corrupt. Reinstall pyromi")
    sha = _sha256(pt)
    if sha != meta.get("sha256"):
        raise WeightsError(
            f"MIST weights {pt} fail the integrity check: SHA-256 {sha} != recorded "
            f"{meta.get('sha256')}; the file is corrupt or was replaced. Reinstall pyromi"
        )
    state = _safe_load(pt, "Reinstall pyromi")
    model = _build(state, name, sha, meta)
    _CACHE[name] = model
    return model


def _safe_load(path: Path, fix: str):
    """``torch.load(weights_only=True)`` whose failures (corrupt file, or a pickle that holds anything
    but tensors and plain containers) become a :class:`WeightsError` naming the file; torch's own
    message is not passed on (it suggests ``weights_only=False``, i.e. running the file's code)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError (zip), EOFError, ...
        raise WeightsError(
            f"{path} is not a valid MIST checkpoint ({type(e).__name__}): the file is corrupt, was "
            f"altered, or holds objects other than tensors and plain values, and is not loaded. {fix}"
        ) from None


def load_checkpoint(path: str | Path, meta: dict | None = None) -> Pretrained:
    """Load a checkpoint written by :mod:`pyromi.mist.train` (``best.pt``; no recorded hash to check)."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"checkpoint {path} does not exist")
    state = _safe_load(path, "Re-export it with `python -m pyromi.mist.train --export`, or retrain")
    return _build(state, str(path), _sha256(path), meta or {})


def _resolve(model, arg: str = "model") -> Pretrained:
    if model is None:
        return load_pretrained()
    if isinstance(model, str):
        return load_pretrained(model)
    if isinstance(model, Pretrained):
        return model
    raise PyromiError(f"{arg}= must be a weights name (e.g. {DEFAULT_WEIGHTS!r}, 'mist-medium'), a Pretrained "
                      f"(mist.load_pretrained) or None, got {type(model).__name__}")


def _check_n(n: int, pre: Pretrained) -> None:
    n_min = pre.config.n_min
    if n < n_min:
        raise PyromiError(
            f"x and y have n={n} rows; MIST was trained for n >= {n_min}: pass at least "
            f"{n_min} samples"
        )


def _check_domain(x: np.ndarray, y: np.ndarray, pre: Pretrained) -> None:
    cfg = pre.config
    for name, a in (("x", x), ("y", y)):
        d = a.shape[1]
        if d > cfg.d_max:
            raise PyromiError(
                f"{name} has {d} columns but the MIST weights {pre.name!r} were trained for 1..{cfg.d_max} "
                f"columns per side; reduce {name} to at most {cfg.d_max} columns (e.g. drop or "
                f"PCA-project variables) or use pyromi.baselines.ksg_mi / a critic-based bound"
            )
    _check_n(x.shape[0], pre)
    for name, a in (("x", x), ("y", y)):
        uniq = min(len(np.unique(a[:, j])) for j in range(a.shape[1]))
        if uniq < 0.5 * a.shape[0]:
            _warn(
                f"{name} has a column with only {uniq} distinct values in n={a.shape[0]} rows: MIST was "
                f"trained on continuous distributions, so estimates for discrete data are out of domain",
            )


#: MIST's quantile head reads tau in [1e-4, 1 - 1e-4] (see :mod:`pyromi.mist.model`)
MAX_LEVEL = 1.0 - 2e-4
#: block split used when ``seed=None``: estimates are a deterministic function of the sample
DEFAULT_SEED = 0
_MAX_SEED = 2**63 - 1


class MISTRangeWarning(PyromiWarning):
    """The sample shows more dependence than the MIST weights were trained on: the estimate's
    interval is unbounded above (see :mod:`pyromi.mist.range_check`)."""


def _check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise PyromiError(f"level must be a float in (0, 1), the nominal coverage of the interval (e.g. 0.9); got {level!r}")
    if float(level) > MAX_LEVEL:
        raise PyromiError(
            f"level={level} is beyond what MIST's quantile head resolves (tau in [1e-4, 1 - 1e-4], so "
            f"level <= {MAX_LEVEL}); pass level <= {MAX_LEVEL} (intervals are calibrated for "
            f"levels up to 0.95)"
        )
    return float(level)


def _check_seed(seed) -> int:
    if seed is None:
        return DEFAULT_SEED
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= _MAX_SEED:
        raise PyromiError(f"seed must be None or an int in [0, 2**63), got {seed!r}")
    return int(seed)


def _blocks(n: int, n_max: int, seed: int) -> list[np.ndarray]:
    """Random split of ``range(n)`` into ``ceil(n / n_max)`` blocks whose sizes differ by at most 1
    (a private generator seeded by ``seed``: the global RNG is not touched)."""
    b = math.ceil(n / n_max)
    if b == 1:
        return [np.arange(n)]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).numpy()
    return np.array_split(perm, b)


@torch.no_grad()
def _block_log1p_quantiles(x: np.ndarray, y: np.ndarray, taus: np.ndarray, pre: Pretrained, seed) -> np.ndarray:
    """Quantiles of log(1 + I) per block, ``(B, K)``."""
    from .model import bucket_length, collate, encode_set

    blocks = _blocks(x.shape[0], pre.config.n_max, _check_seed(seed))
    t = torch.as_tensor(taus, dtype=torch.float32)
    if pre.head is not None:
        from .hybrid import hybrid_inputs

        rng = np.random.default_rng([_check_seed(seed), 0x71E5])  # ties of discrete columns: a private generator
        inp = np.stack([hybrid_inputs(x[i], y[i], pre, pre.head.cfg, tie_rng=rng) for i in blocks])
        return pre.head.log1p_quantiles(torch.as_tensor(inp, dtype=torch.float32), t).double().numpy()
    enc = [encode_set(x[i], y[i], pre.config) for i in blocks]
    tok, mask, feats = collate(enc, pad_to=bucket_length(max(len(i) for i in blocks)))
    return pre.net.log1p_quantiles(tok, mask, feats, t).double().numpy()


def _shrink_factors(u: np.ndarray, taus: np.ndarray, gamma: float, dev: np.ndarray) -> np.ndarray:
    """Per-tau factor ``f`` by which the combined interval's median-to-end distances are smaller
    than a single block's (see :func:`_combine`)."""
    from scipy.special import ndtri

    b = u.shape[0]
    if b == 1:
        return np.ones_like(taus)
    mid = int(np.argmin(np.abs(taus - 0.5)))
    noise = np.abs(ndtri(taus)) * u[:, mid].std(ddof=1)  # z_tau x the block-median noise
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(np.abs(dev) > 0, np.minimum(1.0, (noise / np.abs(dev)) ** 2), 1.0)
    return np.maximum(np.sqrt(1.0 - (1.0 - 1.0 / b) * share), b ** (-gamma))


def _combine(u: np.ndarray, taus: np.ndarray, gamma: float, scales: np.ndarray) -> np.ndarray:
    """Combine block quantiles ``u`` ``(B, K)`` (log(1 + I) scale; ``taus`` ascending, containing 0.5)
    into ``(K,)``.

    ``m = mean_b u_b(0.5)``; ``d(tau) = s(tau) mean_b (u_b(tau) - u_b(0.5))`` is the calibrated
    distance from the median to the tau-quantile of one block; the result is
    ``u(tau) = m + f(tau) d(tau)``, made non-decreasing in tau and floored at 0, with the shrinkage
    factor ``f = max(B^-gamma, sqrt(1 - (1 - 1/B) min(1, (z_tau sigma / d)^2)))``; a lower quantile
    (``tau < 1/2``) that at least half of the blocks put at 0 after calibration is 0 (see below).

    Why: a block's error is a systematic part shared by all blocks (the network's bias for this
    kind of distribution at this block size) plus sampling noise independent across blocks. Its
    calibrated distance ``d`` covers both, ``d^2 = z^2 (tau_sys^2 + sigma^2)``; the mean of B
    block medians keeps the systematic part and divides the noise variance by B, so its distance
    is ``sqrt(d^2 - z^2 sigma^2 + z^2 sigma^2 / B)``. ``sigma`` is estimated by the spread of the B
    block medians (``z_tau = |Phi^-1(tau)|``). When the blocks agree (systematic error dominates,
    e.g. independent data, where the network's median is ~0.01 nats in every block) the interval
    does not shrink and keeps covering; when they scatter it shrinks up to ``1 / sqrt(B)``.
    Independence is an atom of the MI (``I = 0`` exactly) at which every block's median is a little
    above 0: that error is systematic, but the spread of the block medians makes it look like noise;
    so where most blocks' calibrated tau-quantile is 0 the combined one is 0 too.
    ``B^-gamma`` (``gamma`` calibrated on validation families under the older rule
    ``f = B^-gamma``) caps the shrinkage too: the interval never shrinks faster than either allows.
    """
    mid = int(np.argmin(np.abs(taus - 0.5)))
    m = u[:, mid].mean()
    dev = scales * (u - u[:, mid : mid + 1]).mean(0)
    f = _shrink_factors(u, taus, gamma, dev)
    out = np.maximum(m + f * dev, 0.0)
    # the atom I = 0: where most blocks put their (calibrated) tau-quantile at 0 -- each block alone
    # cannot exclude independence at that level -- the combination does not exclude it either: the
    # network's positive error at I = 0 is the same in every block and does not average out
    at_zero = np.median(np.maximum(u[:, mid : mid + 1] + scales * (u - u[:, mid : mid + 1]), 0.0), axis=0) <= 0.0
    out[(taus < 0.5) & at_zero] = 0.0
    return np.maximum.accumulate(out)


def _validated(x, y, pre: Pretrained) -> tuple[np.ndarray, np.ndarray]:
    """``x, y`` as float64 arrays, checked (shapes, NaN/inf, constant columns) and inside the
    weights' domain."""
    from ..baselines import check_xy

    # shapes and NaN/inf first, then MIST's own minimum n (not the generic n >= 2 of check_xy:
    # n = 0 or 1 must say what MIST needs), then constant columns
    x, y = check_xy(x, y, min_n=0, check_constant=False)
    _check_n(x.shape[0], pre)
    x, y = check_xy(x, y, min_n=2)
    _check_domain(x, y, pre)
    return x, y


def _calibrated_quantiles(x, y, grid: np.ndarray, pre: Pretrained, seed, rule: str,
                          calibrated: bool = True) -> tuple[np.ndarray, int]:
    """MI quantiles (nats) at the ascending ``grid`` (which contains 0.5) and the number of
    blocks: network quantiles per block, median-to-end distances scaled by the rule's factor for
    the interval of coverage ``|2 tau - 1|`` (1 if not ``calibrated``), combined over blocks."""
    u = _block_log1p_quantiles(x, y, grid, pre, seed)
    nb = u.shape[0]
    dims = x.shape[1] + y.shape[1]
    med = float(np.expm1(u[:, int(np.argmin(np.abs(grid - 0.5)))].mean()))
    scales = np.array([pre.scale_for(abs(2 * t - 1), x.shape[0] // nb, rule, side="upper" if t > 0.5 else "lower",
                                     dims=dims, median=med) if calibrated else 1.0 for t in grid])
    q = np.expm1(_combine(u, grid, pre.gamma_for(rule), scales))
    if not np.all(np.isfinite(q)):  # cannot happen (quantiles are capped); never pass it on
        raise PyromiError(f"MIST produced non-finite quantiles {q.tolist()} on this sample; please report it")
    return q, nb


def _range_check(x, y, pre: Pretrained, q95: float, seed: int) -> dict:
    from . import range_check
    from .model import _MAX_U

    shape_q99 = pre.trained_mi_q99_for(x.shape[1], y.shape[1])
    rc = range_check.check(x, y, shape_q99=shape_q99, mist_q95=q95, seed=seed)
    if q95 > shape_q99:  # the calibrated upper end lies beyond the MI the weights were trained on
        rc["reasons"].append(
            f"MIST's own 95% quantile ({min(q95, math.expm1(_MAX_U)):.1f} nats after calibration) lies above "
            f"{shape_q99:.2f} nats, the 99th percentile of the MI the weights were trained on for "
            f"(dx, dy) = ({x.shape[1]}, {y.shape[1]}), so no finite upper end is supported"
        )
        rc["fired"] = True
    return rc


def _range_warning(rc: dict, median: float, stacklevel: int) -> None:
    _warn(
        "MIST: the sample shows more dependence than the weights were trained on: "
        + "; ".join(rc["reasons"])
        + f". MIST cannot measure MI beyond that range (its median, {median:.2f} nats, is unreliable "
        "there, too low or too high), so the interval is returned unbounded above (upper = None); "
        "its lower end stands. "
        "Use a density-based bound (mutual_information(..., bound='ais' or 'iwae')) if the model's "
        "densities are available; otherwise report the MI as at least the lower end.",
        MISTRangeWarning,
    )


def quantiles(x, y, taus, *, model=None, seed: int | None = None, calibrated: bool = True,
              calibration: str | None = None) -> np.ndarray:
    """The MI quantiles (nats) at ``taus`` (each in (0, 1)), shape ``(len(taus),)``, increasing in tau.

    ``model``: weights name or :class:`Pretrained` (default: the shipped weights). ``seed`` fixes the
    random block split when ``n > n_max`` (``None``: the fixed default split, seed 0; the global
    RNGs are never used). ``calibrated`` applies the validation-fitted interval scales of rule
    ``calibration`` (``"pooled"`` or ``"family_robust"``; default: the weights' recorded rule); ``calibrated=False`` gives
    the raw network quantiles, combined over blocks with the same rule.

    The range check of :func:`estimate` runs here too: when it fires (a
    :class:`MISTRangeWarning` says why), every quantile with ``tau > 0.5`` is ``math.inf``.
    """
    pre = _resolve(model)
    seed = _check_seed(seed)
    taus = np.atleast_1d(np.asarray(taus, dtype=np.float64))
    if taus.ndim != 1 or not np.all((taus > 0) & (taus < 1)):
        raise PyromiError(f"taus must be a 1-D sequence of probabilities in (0, 1), got {taus!r}")
    if not np.all((taus >= 1e-4) & (taus <= 1 - 1e-4)):
        raise PyromiError(f"taus must lie in [1e-4, 1 - 1e-4] (the range MIST's quantile head resolves), got {taus!r}")
    x, y = _validated(x, y, pre)
    rule = pre.rule(calibration)
    grid = np.unique(np.concatenate([taus, [0.5, 0.95]]))
    out, _ = _calibrated_quantiles(x, y, grid, pre, seed, rule, calibrated)
    if not calibrated:
        q95 = _calibrated_quantiles(x, y, np.array([0.5, 0.95]), pre, seed, rule)[0][1]
    else:
        q95 = out[np.searchsorted(grid, 0.95)]
    rc = _range_check(x, y, pre, q95, seed)
    res = out[np.searchsorted(grid, taus)]
    if rc["fired"]:
        _range_warning(rc, float(out[np.searchsorted(grid, 0.5)]), stacklevel=3)
        res = np.where(taus > 0.5, math.inf, res)
    return res


def estimate(
    x,
    y,
    *,
    level: float = 0.9,
    seed: int | None = None,
    model=None,
    calibration: str | None = None,
    observed: tuple[str, ...] = ("x",),
    latent: tuple[str, ...] = ("y",),
) -> LearnedEstimate:
    """MIST estimate of I(X; Y) in nats from paired samples ``x`` ``(n, dx)`` and ``y`` ``(n, dy)``.

    Returns an :class:`~pyromi.LearnedEstimate` with ``bound="mist"``, ``point`` (= ``value``) the
    median, ``lower``/``upper`` the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles, ``level``,
    ``num_samples = n``, and ``intervals`` (``{level: (lower, upper)}`` for ``level`` and the
    calibrated levels 0.5, 0.8, 0.9, 0.95; :meth:`~pyromi.LearnedEstimate.interval` reads them).
    ``settings`` records the weights (name, SHA-256, config), ``diagnostics`` the number of blocks,
    the block size, the milliseconds taken, the weights' training-MI 99th percentile
    ``trained_mi_q99`` and ``extrapolation`` (the median lies above it; a warning too), and the range
    check (``beyond_trained_range``, ``range_check``).

    **Range check** (:mod:`pyromi.mist.range_check`): when the sample shows more dependence than the
    weights were trained on -- a 99% lower value of the Gaussian-copula (CCA) MI of the normal
    scores, or of KSG on them (``dx + dy <= 4``), above the training MI's 99th percentile for this
    ``(dx, dy)`` or above MIST's own 95% quantile (e.g. ``x == y``, ``y = x ** 3``, MI of 18 nats from
    20 columns, non-monotone dependence) -- the estimate warns (:class:`MISTRangeWarning`), sets
    ``diagnostics["beyond_trained_range"] = True`` and returns the interval **unbounded above**:
    ``upper = None`` (in every stored interval). MIST cannot see beyond its training range, so
    no finite upper end is supported; the lower end and median are MIST's (the median is then
    likely too low). An interval that claims 90% must not exclude what it cannot see.

    **Blocks**: above ``n_max`` rows the sample is split at random into blocks combined by
    :func:`_combine` (the interval shrinks only as far as the spread of the block medians shows
    sampling noise; the network's systematic error does not average out).

    Args:
        x, y: numpy arrays or torch tensors, one row per joint draw; ``dx != dy`` is fine.
        level: nominal coverage of ``[lower, upper]`` (default 0.9), at most ``MAX_LEVEL``; levels
            outside the calibrated 0.5..0.95 use the nearest calibrated scale
            (``settings["level_calibrated"]`` says which).
        seed: block split for ``n > n_max`` and the range check's row sample (``None``: the fixed
            default, seed 0, so the estimate is a deterministic function of the sample). The
            global torch and numpy RNGs are never used or changed.
        model: weights name or :class:`Pretrained` (default: the shipped ``DEFAULT_WEIGHTS``).
        calibration: interval rule, ``"pooled"`` or ``"family_robust"`` (default: the weights'
            recorded rule, ``pre.rule()``: ``"pooled"`` for ``mist-hybrid``, ``"family_robust"`` for
            ``mist-medium``; see the module docstring). Coverage of both is measured in
            ``benchmarks/bench_mist.py``.
        observed, latent: names shown in the result's repr.

    Raises:
        PyromiError: bad shapes, mismatched n, NaN/inf, a constant column, ``n < n_min``, more than
            ``d_max`` columns on either side, ``level`` outside (0, MAX_LEVEL], a bad ``seed``.
        WeightsError: weights missing, corrupt or failing their SHA-256 check.
    """
    t0 = time.perf_counter()
    level = _check_level(level)
    seed_used = _check_seed(seed)
    pre = _resolve(model)
    x, y = _validated(x, y, pre)
    rule = pre.rule(calibration)
    cal_levels = [float(v) for v in pre.meta.get("calibration", {}).get("levels", [])]
    levels = sorted({level, *cal_levels})
    grid = np.unique(np.concatenate([[0.5, 0.95], [(1 - v) / 2 for v in levels], [(1 + v) / 2 for v in levels]]))
    q, nb = _calibrated_quantiles(x, y, grid, pre, seed_used, rule)

    def at(t):
        return float(q[int(np.argmin(np.abs(grid - t)))])

    n = x.shape[0]
    dims = x.shape[1] + y.shape[1]
    median = at(0.5)
    s = {side: pre.scale_for(level, n // nb, rule, side=side, dims=dims, median=median) for side in ("lower", "upper")}
    rc = _range_check(x, y, pre, at(0.95), seed_used)
    beyond = rc["fired"]
    intervals = {v: (at((1 - v) / 2), None if beyond else at((1 + v) / 2)) for v in levels}
    ms = 1e3 * (time.perf_counter() - t0)
    q99 = pre.trained_mi_q99
    extrapolation = bool(median > q99)
    if beyond:
        _range_warning(rc, median, stacklevel=3)
    if extrapolation:
        _warn(
            f"MIST estimate {median:.2f} nats is above {q99} nats, the 99th percentile of the MI "
            f"it was trained on: this is extrapolation, and its accuracy and interval coverage there were not measured. If the "
            f"model's densities are available, use a bound (bound='ais' or 'iwae') instead",
        )
    lo, hi = intervals[level]
    return LearnedEstimate(
        point=median,
        lower=lo,
        upper=hi,
        level=level,
        bound="mist",
        num_samples=n,
        settings={
            "weights": pre.name,
            "sha256": pre.sha256,
            "config": pre.config.to_dict(),
            "level": level,
            "level_calibrated": bool(cal_levels) and min(cal_levels) <= level <= max(cal_levels),
            "seed": seed_used,
            "calibration": rule,
            "combine_gamma": pre.gamma_for(rule),
            "interval_scale": s,
        },
        diagnostics={
            "blocks": nb,
            "block_size": int(math.ceil(n / nb)),
            "milliseconds": ms,
            "dims": (x.shape[1], y.shape[1]),
            "trained_mi_q99": q99,
            "extrapolation": extrapolation,
            "beyond_trained_range": beyond,
            "range_check": rc,
        },
        observed=tuple(observed),
        latent=tuple(latent),
        intervals=intervals,
    )


def estimate_from_samples(x, y, **kwargs) -> LearnedEstimate:
    """Alias of :func:`estimate` for callers holding torch tensors ``(n, dx)``, ``(n, dy)`` (e.g. the
    flattened observed and latent sites of a Pyro model)."""
    return estimate(x, y, **kwargs)
