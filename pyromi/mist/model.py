"""MIST network and its input encoding.

**Encoding** (:func:`encode_set`, numpy, one set at a time, identical in training and inference):

1. Per-column normalisation of x ``(n, dx)`` and y ``(n, dy)``:

   - ``"rank"`` (copula): ``u_ij = Phi^{-1}((r_ij - 1/2) / n)`` with ``r_ij`` the rank of ``x_ij``
     in its column (ties get their average rank). Invariant to every strictly increasing map of
     each column, hence to the half-cube / asinh / wiggly transforms and to affine rescaling.
   - ``"standard"``: ``u_ij = (x_ij - mean_j) / sd_j`` (invariant to affine maps of each column).

2. Tokens, one per row: ``[u_i (d_max slots), v_i (d_max slots), m_x (d_max), m_y (d_max)]`` where
   X fills slots ``0..dx-1`` of the first group and Y slots ``0..dy-1`` of the second, the rest
   are zero, and ``m_x, m_y`` are 0/1 presence masks. Roles are explicit, so ``dx != dy`` is
   native and nothing is inferred from zero patterns.

3. Set features (:func:`set_features`): ``log n``, ``dx``, ``dy``, the independence bias scale
   ``dx dy / (2n)``, and canonical-correlation summaries of the normalised sample: per canonical
   pair ``m_i = -1/2 log(1 - rho_i^2)`` (sorted, zero-padded to ``d_max``), their sum (the Gaussian
   copula MI), and the same sum for the quadratic features ``[u, u^2 - 1]`` vs ``[v, v^2 - 1]``
   (sensitive to shared scale, e.g. Student-t tails). Correlation matrices are shrunk,
   ``R <- (1 - s) R + s I`` with ``s = 1e-3``, so they are defined for ``n <= dx + dy``.

**Network** (:class:`MISTNet`): row MLP -> ``num_isab`` induced set-attention blocks (ISAB,
``num_inducing`` learned inducing points, pre-norm multi-head attention; cost linear in n) ->
pooling by multi-head attention (PMA) with ``num_seeds`` seeds -> concatenation with an embedding
of the set features -> quantile head.

Padding: row masks come from the set lengths (``True`` = real row); padded rows are excluded from
every attention as keys, so outputs do not depend on them.

**Quantile head** (monotone in tau by construction, non-negative):
``z(tau) = a + softplus(w_0) logit(tau) / 4 + sum_m softplus(w_m) sigmoid((logit(tau) - c_m) / s)``
with fixed centres ``c_m`` on ``[-4.5, 4.5]``; the tau-quantile of ``log(1 + I)`` is
``softplus(z(tau))`` and the quantile of I is ``expm1`` of it. Each step is increasing, so
quantiles cannot cross, and ``I >= 0``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy import special, stats
from torch import nn

__all__ = [
    "MISTConfig",
    "MISTNet",
    "normalise_columns",
    "set_features",
    "encode_set",
    "collate",
    "bucket_length",
    "num_set_features",
    "SHRINK",
]

#: Shrinkage of correlation matrices toward the identity in the set features.
SHRINK = 1e-3
_MAX_U = 6.0  # cap on log(1 + I) quantiles (I <= e^6 - 1 ~ 402 nats): keeps expm1 finite


@dataclass(frozen=True)
class MISTConfig:
    """Architecture and encoding of a MIST network (stored with every checkpoint)."""

    d_max: int = 16
    norm: str = "rank"  # "rank" or "standard"
    dim: int = 64
    heads: int = 4
    num_inducing: int = 16
    num_isab: int = 2
    num_seeds: int = 4
    ffn: int = 128
    row_hidden: int = 128
    head_hidden: int = 128
    num_basis: int = 16
    use_set_features: bool = True
    n_min: int = 10
    n_max: int = 1000

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MISTConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown MISTConfig keys {sorted(unknown)}")
        return cls(**d)


# ----------------------------------------------------------------------------- encoding


def normalise_columns(a: np.ndarray, norm: str, *, ties: bool = True) -> np.ndarray:
    """Per-column normalisation of ``a`` ``(n, d)``: ``"rank"`` -> normal scores of average ranks,
    ``Phi^{-1}((r - 1/2) / n)``; ``"standard"`` -> z-scores. Returns float64.

    ``ties=False`` ranks by a double argsort (ties broken by position): identical for tie-free
    columns and faster; the training generator uses it (its draws are continuous).
    """
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    if norm == "rank":
        if ties:
            r = stats.rankdata(a, axis=0, method="average")
        else:
            r = np.empty_like(a)
            np.put_along_axis(r, np.argsort(a, 0), np.arange(1.0, n + 1)[:, None], 0)
        return special.ndtri((r - 0.5) / n)
    if norm == "standard":
        sd = a.std(0)
        return (a - a.mean(0)) / np.where(sd > 0, sd, 1.0)
    raise ValueError(f"norm must be 'rank' or 'standard', got {norm!r}")


def _corr(a: np.ndarray) -> np.ndarray:
    a = a - a.mean(0)
    sd = np.sqrt((a * a).mean(0))
    a = a / np.where(sd > 0, sd, 1.0)
    return (a.T @ a) / a.shape[0]


def _canonical_mi(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per-pair ``-1/2 log(1 - rho_i^2)`` from the shrunk sample canonical correlations, descending."""
    from ..baselines import canonical_pair_mi

    r = _corr(np.concatenate([u, v], 1))
    r = (1 - SHRINK) * r + SHRINK * np.eye(len(r))
    return canonical_pair_mi(r, u.shape[1], rho_max=1.0 - 1e-9)


def num_set_features(d_max: int) -> int:
    """Length of :func:`set_features`' output."""
    return 7 + d_max


def set_features(u: np.ndarray, v: np.ndarray, d_max: int) -> np.ndarray:
    """Set-level summaries of a normalised sample (see the module docstring), float32."""
    n, dx = u.shape
    dy = v.shape[1]
    pair = _canonical_mi(u, v)
    quad = _canonical_mi(np.concatenate([u, u * u - 1], 1), np.concatenate([v, v * v - 1], 1))
    padded = np.zeros(d_max)
    padded[: len(pair)] = pair
    f = [
        math.log(n) / math.log(1000.0),
        dx / d_max,
        dy / d_max,
        math.log1p(dx * dy / (2.0 * n)),
        math.log1p(pair.sum()),
        math.log1p(quad.sum()),
        math.log1p(max(quad.sum() - pair.sum(), 0.0)),
    ]
    return np.concatenate([np.asarray(f), np.log1p(padded)]).astype(np.float32)


def encode_set(
    x: np.ndarray, y: np.ndarray, cfg: MISTConfig, *, ties: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Tokens ``(n, 4 d_max)`` and set features for one sample (float32); see the module docstring."""
    n, dx = x.shape
    dy = y.shape[1]
    u = normalise_columns(x, cfg.norm, ties=ties)
    v = normalise_columns(y, cfg.norm, ties=ties)
    D = cfg.d_max
    tok = np.zeros((n, 4 * D), dtype=np.float32)
    tok[:, :dx] = u
    tok[:, D : D + dy] = v
    tok[:, 2 * D : 2 * D + dx] = 1.0
    tok[:, 3 * D : 3 * D + dy] = 1.0
    return tok, set_features(u, v, D)


def bucket_length(n: int, ratio: float = 1.125) -> int:
    """Smallest length ``>= n`` on the grid ``ceil(8 ratio^k)``: padding every batch to one of a few
    dozen lengths bounds the number of tensor shapes torch sees (per-shape CPU caches otherwise
    grow with every new n); outputs do not depend on padding."""
    length = 8
    while length < n:
        length = max(length + 1, math.ceil(length * ratio))
    return length


def collate(
    encoded: list[tuple[np.ndarray, np.ndarray]], pad_to: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad encoded sets to a batch: tokens ``(B, N, F)`` (zero rows past each length), row mask
    ``(B, N)`` (``True`` = real row, from the lengths) and set features ``(B, S)``.
    ``N = max(lengths, pad_to)``."""
    lengths = [t.shape[0] for t, _ in encoded]
    big = max(max(lengths), pad_to or 0)
    tok = np.zeros((len(encoded), big, encoded[0][0].shape[1]), dtype=np.float32)
    for i, (t, _) in enumerate(encoded):
        tok[i, : t.shape[0]] = t
    mask = torch.arange(big)[None, :] < torch.tensor(lengths)[:, None]
    feats = torch.from_numpy(np.stack([f for _, f in encoded]))
    return torch.from_numpy(tok), mask, feats


# ----------------------------------------------------------------------------- network


class MAB(nn.Module):
    """Pre-norm multihead attention block: ``h = q + MHA(LN q, LN k)``; ``out = h + FFN(LN h)``."""

    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.ln_q = nn.LayerNorm(dim)
        self.ln_k = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.o = nn.Linear(dim, dim)
        self.ln_f = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))

    def forward(self, q: torch.Tensor, k: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, M, D = q.shape
        N, h = k.shape[1], self.heads
        qh = self.q(self.ln_q(q)).view(B, M, h, D // h).transpose(1, 2)
        kh, vh = self.kv(self.ln_k(k)).view(B, N, 2, h, D // h).permute(2, 0, 3, 1, 4)
        am = None if key_mask is None else key_mask[:, None, None, :]
        a = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=am)
        x = q + self.o(a.transpose(1, 2).reshape(B, M, D))
        return x + self.ff(self.ln_f(x))


class ISAB(nn.Module):
    """Induced set attention: ``H = MAB(I, X)`` over real rows; ``X' = MAB(X, H)``; O(n m)."""

    def __init__(self, dim: int, heads: int, ffn: int, num_inducing: int) -> None:
        super().__init__()
        self.inducing = nn.Parameter(torch.randn(num_inducing, dim) / math.sqrt(dim))
        self.mab1 = MAB(dim, heads, ffn)
        self.mab2 = MAB(dim, heads, ffn)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.mab1(self.inducing.expand(x.shape[0], -1, -1), x, mask)
        return self.mab2(x, h)


class PMA(nn.Module):
    """Pooling by multihead attention: ``MAB(S, X)`` with ``k`` learned seeds, over real rows."""

    def __init__(self, dim: int, heads: int, ffn: int, num_seeds: int) -> None:
        super().__init__()
        self.seeds = nn.Parameter(torch.randn(num_seeds, dim) / math.sqrt(dim))
        self.mab = MAB(dim, heads, ffn)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.mab(self.seeds.expand(x.shape[0], -1, -1), x, mask)


class MonotoneQuantileHead(nn.Module):
    """Quantiles of I given an embedding, increasing in tau and >= 0 (see the module docstring)."""

    def __init__(self, inp: int, hidden: int, num_basis: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(inp, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 2 + num_basis)
        )
        self.register_buffer("centres", torch.linspace(-4.5, 4.5, num_basis), persistent=False)
        self.width = 9.0 / max(num_basis - 1, 1)

    def log1p_quantiles(self, e: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
        """Quantiles of ``log(1 + I)``: ``e`` ``(B, inp)``, ``taus`` ``(B, K)`` or ``(K,)`` -> ``(B, K)``."""
        return F.softplus(self.raw(e, taus)).clamp(max=_MAX_U)

    def raw(self, e: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
        """``z(tau)`` (before the output map), increasing in tau, ``(B, K)``."""
        p = self.net(e)
        a, w0, w = p[:, :1], F.softplus(p[:, 1:2]), F.softplus(p[:, 2:])
        if taus.dim() == 1:
            taus = taus.expand(e.shape[0], -1)
        lt = torch.logit(taus.clamp(1e-4, 1 - 1e-4))
        basis = torch.sigmoid((lt[..., None] - self.centres) / self.width)  # (B, K, M)
        return a + w0 * lt / 4.0 + (basis * w[:, None, :]).sum(-1)

    def forward(self, e: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
        return torch.expm1(self.log1p_quantiles(e, taus))


class MISTNet(nn.Module):
    """Set transformer mapping a (padded) batch of encoded samples to quantiles of the MI (nats)."""

    def __init__(self, cfg: MISTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.dim
        self.row = nn.Sequential(
            nn.Linear(4 * cfg.d_max, cfg.row_hidden), nn.GELU(), nn.Linear(cfg.row_hidden, cfg.row_hidden),
            nn.GELU(), nn.Linear(cfg.row_hidden, D),
        )
        self.isabs = nn.ModuleList(ISAB(D, cfg.heads, cfg.ffn, cfg.num_inducing) for _ in range(cfg.num_isab))
        self.pma = PMA(D, cfg.heads, cfg.ffn, cfg.num_seeds)
        self.pool = nn.Sequential(nn.LayerNorm(cfg.num_seeds * D), nn.Linear(cfg.num_seeds * D, D))
        inp = D
        if cfg.use_set_features:
            self.feat = nn.Sequential(nn.Linear(num_set_features(cfg.d_max), D), nn.GELU(), nn.Linear(D, D))
            inp += D
        self.head = MonotoneQuantileHead(inp, cfg.head_hidden, cfg.num_basis)

    def embed(self, tokens: torch.Tensor, mask: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """Set embedding ``(B, inp)`` from tokens ``(B, N, 4 d_max)``, row mask ``(B, N)``, features."""
        h = self.row(tokens)
        for blk in self.isabs:
            h = blk(h, mask)
        e = self.pool(self.pma(h, mask).flatten(1))
        if self.cfg.use_set_features:
            e = torch.cat([e, self.feat(feats)], -1)
        return e

    def forward(self, tokens, mask, feats, taus) -> torch.Tensor:
        """tau-quantiles of I, ``(B, K)``, for ``taus`` ``(B, K)`` or ``(K,)``."""
        return self.head(self.embed(tokens, mask, feats), taus)

    def log1p_quantiles(self, tokens, mask, feats, taus) -> torch.Tensor:
        """tau-quantiles of ``log(1 + I)``, ``(B, K)``."""
        return self.head.log1p_quantiles(self.embed(tokens, mask, feats), taus)


def widen_state_dict(state: dict, old: MISTConfig, new: MISTConfig) -> dict:
    """Map a state dict of a network with ``old.d_max`` onto one with ``new.d_max >= old.d_max``
    (everything else in the architecture equal) so that the new network computes the same function
    on every sample with at most ``old.d_max`` columns per side: the input weights of the token
    slots ``[u, v, m_x, m_y]`` move to their new offsets (new slots get zero weights), the
    ``dx / d_max`` and ``dy / d_max`` set features get weights scaled by ``new.d_max / old.d_max``
    and the padded canonical-pair features keep theirs (new ones zero). Used to warm-start a
    wider network from trained weights (``python -m pyromi.mist.train --init``)."""
    if replace(old, d_max=new.d_max, n_max=new.n_max, n_min=new.n_min) != new:
        raise ValueError("widen_state_dict: only d_max (and the n range) may differ between the configs")
    if new.d_max < old.d_max:
        raise ValueError(f"cannot narrow d_max from {old.d_max} to {new.d_max}")
    Do, Dn = old.d_max, new.d_max
    out = {k: v.clone() for k, v in state.items()}
    w = state["row.0.weight"]
    wn = w.new_zeros(w.shape[0], 4 * Dn)
    for slot in range(4):
        wn[:, slot * Dn : slot * Dn + Do] = w[:, slot * Do : (slot + 1) * Do]
    out["row.0.weight"] = wn
    if new.use_set_features:
        f = state["feat.0.weight"]
        fn = f.new_zeros(f.shape[0], num_set_features(Dn))
        fn[:, :7] = f[:, :7]
        fn[:, 1:3] *= Dn / Do
        fn[:, 7 : 7 + Do] = f[:, 7:]
        out["feat.0.weight"] = fn
    return out
