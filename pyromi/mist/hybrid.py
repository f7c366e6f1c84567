"""Hybrid MIST: the set network's output beside classical statistics, read by a quantile head.

A learned estimator should never be much worse than the classical estimators it could compute
itself: KSG is nearly exact in one to three dimensions, and the Gaussian-copula (CCA) MI is exact
for Gaussian copulas. The hybrid head reads, per (block) sample,

* the set network's quantiles of ``log(1 + I)`` at :data:`BASE_TAUS` and (``use_embedding``) its
  set embedding (:meth:`pyromi.mist.model.MISTNet.embed`, which includes the set features of
  :func:`pyromi.mist.model.set_features`: ``log n``, ``dx``, ``dy``, the canonical-correlation
  spectrum and the Gaussian-copula MI of the normal scores);
* **KSG on the normal scores** at ``k`` in :data:`KSG_KS` (:func:`knn_features`): Kraskov et
  al.'s estimator 1, ``psi(k) + psi(n) - <psi(n_x + 1) + psi(n_y + 1)>``, with Euclidean
  distances within X and within Y and their maximum on the joint space (a valid KSG metric: the
  joint ball is the product of the marginal balls), plus the standard error of its per-row terms;

and outputs monotone quantiles of ``log(1 + I)`` with the head of
:class:`pyromi.mist.model.MonotoneQuantileHead`, whose output ``z(tau)`` is trained unbounded and
clamped at 0 at inference (not passed through a softplus): the meta-data hold independent sets
(MI exactly 0), so a lower quantile of the MI can be exactly 0 and the interval then contains it. Inputs are standardised with the training
features' mean and standard deviation (stored with the head). The head is trained on the second
meta-prior (:data:`pyromi.mist.families.SPLITS` ``"train_v2"``) by
:mod:`pyromi.mist.train_hybrid`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy import special
from torch import nn

from .model import _MAX_U, MonotoneQuantileHead, collate, encode_set

__all__ = [
    "BASE_TAUS",
    "KSG_KS",
    "KAPPA",
    "HybridConfig",
    "HybridHead",
    "HybridEnsemble",
    "combine_members",
    "anchor",
    "knn_features",
    "hybrid_inputs",
    "layout",
    "member_columns",
    "num_inputs",
]

#: quantile levels of the set network read by the head
BASE_TAUS = (0.05, 0.25, 0.5, 0.75, 0.95)
#: neighbour counts of the KSG features
KSG_KS = (1, 2, 4, 8)
#: weight of the heads' disagreement in the ensemble's interval (:func:`combine_members`)
KAPPA = 1.0


@dataclass(frozen=True)
class HybridConfig:
    """Architecture of the hybrid head (stored with the weights)."""

    base_dim: int = 128  # width of the set network's embedding
    use_embedding: bool = False
    use_base_quantiles: bool = True
    hidden: int = 128
    num_basis: int = 16
    ksg_ks: tuple = KSG_KS
    base_taus: tuple = BASE_TAUS
    anchor_k: int = 4  # the head's output is an offset from log(1 + max(0, KSG_k)); 0: no anchor
    feature_mean: list = field(default_factory=list)
    feature_std: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ksg_ks"], d["base_taus"] = list(self.ksg_ks), list(self.base_taus)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HybridConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown HybridConfig keys {sorted(unknown)}")
        d = dict(d)
        for k in ("ksg_ks", "base_taus"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


#: set features read from :func:`pyromi.mist.model.set_features` (log n, dx, dy, null-bias scale,
#: Gaussian-copula MI, quadratic-feature MI, their difference, the canonical-pair MIs)
def _num_set_features(d_max: int) -> int:
    return 7 + d_max


def layout(cfg: HybridConfig, d_max: int) -> dict[str, slice]:
    """Column ranges of :func:`hybrid_inputs`' output: ``base`` (network quantiles), ``embedding``
    (if ``cfg.use_embedding``), ``set`` (set features), ``knn`` (KSG statistics)."""
    sizes = [("base", len(cfg.base_taus)), ("embedding", cfg.base_dim if cfg.use_embedding else 0),
             ("set", _num_set_features(d_max)), ("knn", 2 * len(cfg.ksg_ks) + 2)]
    out, at = {}, 0
    for name, k in sizes:
        out[name] = slice(at, at + k)
        at += k
    return out


def num_inputs(cfg: HybridConfig, d_max: int = 32) -> int:
    """Number of inputs a head configured by ``cfg`` reads (:func:`member_columns`)."""
    return len(member_columns(cfg, cfg, d_max))


def member_columns(member: HybridConfig, full: HybridConfig, d_max: int) -> np.ndarray:
    """Indices into the inputs computed under ``full`` that a head configured by ``member`` reads
    (its ``use_base_quantiles`` / ``use_embedding`` flags drop column groups)."""
    lay = layout(full, d_max)
    keep = []
    for name in ("base", "embedding", "set", "knn"):
        if name == "base" and not member.use_base_quantiles:
            continue
        if name == "embedding" and not member.use_embedding:
            continue
        keep.extend(range(lay[name].start, lay[name].stop))
    return np.asarray(keep, dtype=np.int64)


def anchor(inputs: torch.Tensor, full: HybridConfig, d_max: int) -> torch.Tensor:
    """``log(1 + max(0, KSG_k))`` ``(B, 1)`` with ``k = full.anchor_k``, read from full raw inputs
    (zeros when ``anchor_k == 0``)."""
    if not full.anchor_k:
        return inputs.new_zeros(inputs.shape[0], 1)
    col = layout(full, d_max)["knn"].start + list(full.ksg_ks).index(full.anchor_k)
    return torch.log1p(torch.sinh(inputs[:, col : col + 1]).clamp_min(0.0))


def knn_features(u: np.ndarray, v: np.ndarray, ks=KSG_KS) -> np.ndarray:
    """KSG estimates (nats) at each ``k`` in ``ks`` and the standard error of the per-row terms at
    the median ``k``, from normal scores ``u`` ``(n, dx)``, ``v`` ``(n, dy)`` (see the module
    docstring). ``k`` is capped at ``n - 2``. Cost O(n^2 (dx + dy)), float32 distances."""
    n = u.shape[0]
    a = torch.from_numpy(np.ascontiguousarray(u, dtype=np.float32))
    b = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))

    def sqdist(z: torch.Tensor) -> torch.Tensor:
        s = (z * z).sum(1)
        d = torch.addmm(s[None, :], z, z.T, alpha=-2.0).add_(s[:, None]).clamp_min_(0.0)
        d.fill_diagonal_(math.inf)
        return d

    dx2, dy2 = sqdist(a), sqdist(b)
    joint = torch.maximum(dx2, dy2)
    kmax = max(1, min(max(ks), n - 2))
    kth = joint.topk(kmax, dim=1, largest=False).values  # (n, kmax), ascending
    out, ses = [], []
    psi_n = special.digamma(n)
    for k in ks:
        k = max(1, min(k, kmax))
        r = kth[:, k - 1 : k]
        nx = (dx2 < r).sum(1, dtype=torch.int32).numpy()
        ny = (dy2 < r).sum(1, dtype=torch.int32).numpy()
        terms = special.digamma(k) + psi_n - special.digamma(nx + 1) - special.digamma(ny + 1)
        out.append(float(terms.mean()))
        ses.append(float(terms.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0)
    return np.asarray(out + [ses[len(ses) // 2]], dtype=np.float64)


def hybrid_inputs(x: np.ndarray, y: np.ndarray, base, cfg: HybridConfig, *, ties: bool = True,
                  tie_rng: np.random.Generator | None = None) -> np.ndarray:
    """Raw (unstandardised) head inputs for one sample (column groups: :func:`layout`): the set
    network's quantiles of ``log(1 + I)``, its embedding (if ``cfg.use_embedding``), the set
    features, then ``asinh`` of the KSG estimates, ``log1p`` of their standard error, ``asinh`` of
    the largest KSG estimate minus the Gaussian-copula MI, and ``asinh`` of each KSG estimate minus
    the Gaussian-copula MI.

    KSG needs distinct points: tied values (rounded or discrete columns) put neighbours at distance
    0 and its counts break down (a rounded Gaussian read as 100 nats), and ``x == y`` with ties
    looks like a perfect correlation to CCA. With ``tie_rng`` every input (set network, set
    features, KSG) reads normal scores whose ties are ranked in a random order
    (:func:`pyromi.mist.range_check.normal_scores`), i.e. each atom is spread by noise
    independent of everything else, which leaves the MI of the tied values unchanged; identical
    to the average ranks for tie-free columns."""
    n = x.shape[0]
    if tie_rng is not None and any(len(np.unique(a[:, j])) < n for a in (x, y) for j in range(a.shape[1])):
        from .range_check import normal_scores

        x, y = normal_scores(x, tie_rng), normal_scores(y, tie_rng)  # tie-free, so ranked as they are
    tok, feats = encode_set(x, y, base.config, ties=ties)
    t, m, f = collate([(tok, feats)])
    with torch.no_grad():
        e = base.net.embed(t, m, f)
        q = base.net.head.log1p_quantiles(e, torch.tensor(cfg.base_taus, dtype=torch.float32))
    dx = x.shape[1]
    u, v = tok[:, :dx].astype(np.float64), tok[:, base.config.d_max : base.config.d_max + y.shape[1]].astype(np.float64)
    ksg = knn_features(u, v, cfg.ksg_ks)
    cca = math.expm1(float(feats[4]))  # log1p of the Gaussian-copula MI (set_features' 5th entry)
    parts = [q[0].double().numpy()]
    if cfg.use_embedding:
        parts.append(e[0].double().numpy())
    parts.append(feats)
    parts.append(np.arcsinh(ksg[:-1]))
    parts.append([math.log1p(ksg[-1]), math.asinh(float(ksg[:-1].max()) - cca)])
    parts.append(np.arcsinh(ksg[:-1] - cca))
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])


class HybridHead(nn.Module):
    """Standardise the inputs, then a monotone quantile head (see the module docstring)."""

    def __init__(self, cfg: HybridConfig) -> None:
        super().__init__()
        self.cfg = cfg
        k = num_inputs(cfg)
        mean = torch.tensor(cfg.feature_mean or [0.0] * k, dtype=torch.float32)
        std = torch.tensor(cfg.feature_std or [1.0] * k, dtype=torch.float32)
        if mean.numel() != k or std.numel() != k:
            raise ValueError(f"feature_mean/std must have {k} entries")
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std.clamp_min(1e-6), persistent=False)
        self.head = MonotoneQuantileHead(k, cfg.hidden, cfg.num_basis)

    def raw(self, inputs: torch.Tensor, taus: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
        """``z(tau) = anchor + g(inputs, tau)`` ``(B, K)``, increasing in tau and unbounded: the
        training target (pinball loss on ``log(1 + I)``), so that a quantile level at which the MI
        is 0 -- independent data, an atom of the meta-prior -- is learned as ``z <= 0``. ``anchor``
        ``(B, 1)`` is ``log(1 + max(0, KSG))`` (:func:`anchor`): the network learns a correction
        to the classical estimate, which is nearly exact in low dimensions, rather than the MI from
        scratch, so where the training data give no reason to move it stays at KSG."""
        z = self.head.raw((inputs - self.mean) / self.std, taus)
        return z if anchor is None else z + anchor

    def log1p_quantiles(self, inputs: torch.Tensor, taus: torch.Tensor, anchor: torch.Tensor | None = None) -> torch.Tensor:
        """Quantiles of ``log(1 + I)`` ``(B, K)`` from raw inputs ``(B, num_inputs)``:
        ``clamp(z(tau), 0, u_max)``, exactly 0 where the head puts that quantile of the MI at 0."""
        return self.raw(inputs, taus, anchor).clamp(0.0, _MAX_U)


def combine_members(q: torch.Tensor, taus: torch.Tensor, kappa: float = KAPPA) -> torch.Tensor:
    """Combine member quantiles of ``log(1 + I)`` ``q`` ``(H, B, K)`` at ``taus`` ``(K,)`` (which
    must contain 0.5) into ``(B, K)``.

    ``m = mean_h q_h(1/2)`` (the ensemble median); ``dev(tau) = mean_h [q_h(tau) - q_h(1/2)]`` (the
    members' own median-to-quantile distances); ``D = sqrt(mean_h (q_h(1/2) - m)^2)`` (their
    disagreement); the result is ``m + sign(dev) sqrt(dev^2 + (kappa D z_tau)^2)`` with
    ``z_tau = Phi^-1(tau)``, floored at 0. Where the members agree the interval is theirs; where
    they disagree -- a sample unlike the training families, on which a head reading the set
    network and a head reading only classical statistics part ways -- it widens by the
    disagreement, as if it were one more independent error of standard deviation ``kappa D``.
    Increasing in tau (``|dev|`` and ``|z_tau|`` both grow away from 1/2), so quantiles never cross.
    """
    mid = int(torch.argmin((taus - 0.5).abs()))
    if abs(float(taus[mid]) - 0.5) > 1e-12:
        raise ValueError("combine_members needs tau = 0.5 among the taus")
    med = q[:, :, mid : mid + 1]  # (H, B, 1)
    m = med.mean(0)
    dev = (q - med).mean(0)
    dis = ((med - m) ** 2).mean(0).sqrt()
    z = torch.special.ndtri(taus.clamp(1e-6, 1 - 1e-6)).to(q.dtype)
    wide = torch.sign(dev) * torch.sqrt(dev**2 + (kappa * dis * z) ** 2)
    return (m + wide).clamp_min(0.0)


class HybridEnsemble(nn.Module):
    """Member heads, each reading its columns of the full inputs (:func:`member_columns`), combined
    by :func:`combine_members`."""

    def __init__(self, full: HybridConfig, members: list[HybridConfig], d_max: int, kappa: float = KAPPA) -> None:
        super().__init__()
        self.cfg = full
        self.d_max = d_max
        self.kappa = float(kappa)
        self.heads = nn.ModuleList(HybridHead(m) for m in members)
        self.columns = [torch.as_tensor(member_columns(m, full, d_max)) for m in members]

    def log1p_quantiles(self, inputs: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
        """Quantiles of ``log(1 + I)`` ``(B, K)`` from the full raw inputs ``(B, num_inputs(full))``."""
        grid = torch.unique(torch.cat([taus.reshape(-1), torch.tensor([0.5], dtype=taus.dtype)]))
        a = anchor(inputs, self.cfg, self.d_max)
        q = torch.stack([h.log1p_quantiles(inputs[:, c], grid, a) for h, c in zip(self.heads, self.columns)])
        out = combine_members(q, grid, self.kappa)
        return out[:, torch.searchsorted(grid, taus.reshape(-1))]


def strata(cal: dict, n, dims, median) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``(n-bin, dims-bin, median-bin)`` of the one-sided calibration strata (Mondrian
    conformal, :func:`pyromi.mist.train_hybrid.calibrate`) for (block) sample sizes ``n``,
    ``dims = dx + dy`` and predicted medians (nats); out-of-range values take the nearest stratum.
    Scalars or arrays; the one lookup shared by calibration, its check and ``Pretrained.scale_for``."""
    def bin_of(edges, v, count):
        return np.clip(np.searchsorted(edges, v, side="right") - 1, 0, count - 1)

    n_edges, d_edges, m_edges = cal["n_edges"], cal["dims_edges"], cal.get("median_edges", [0.0])
    return (bin_of(n_edges, n, len(n_edges) - 1), bin_of(d_edges, dims, len(d_edges)),
            bin_of(m_edges, median, len(m_edges)))

