"""Plots of bounds, AIS diagnostics, MIST intervals and audits (matplotlib, optional dependency).

Every function draws on a given ``ax`` or on a new :class:`matplotlib.figure.Figure` (built without
pyplot, so it renders without a display and never changes the user's backend), saves it to
``path`` when given, and returns the Figure. All values are in nats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .result import MIEstimate

__all__ = [
    "plot_bounds_vs_compute",
    "plot_sandwiches",
    "plot_ais_diagnostics",
    "plot_mist_intervals",
    "plot_audit",
]


def _figure(ax, ncols: int = 1, width: float = 5.0, height: float = 3.4):
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "pyromi's plots need matplotlib: pip install matplotlib (or pip install 'pyromi[plots]')"
        ) from e
    if ax is not None:
        axes = list(ax) if isinstance(ax, (list, tuple)) else [ax]
        return axes[0].figure, axes
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _finish(fig, path: str | None):
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


#: an upper bound is drawn to scale only up to this multiple of the other values (lower bounds,
#: point estimates, truths; at least 1 nat above them): a loose upper bound (a prior-proposal IWAE
#: at 95 nats beside an 18.75-nat truth) would otherwise squash every tight sandwich into a line.
#: Beyond it the bound is marked at the top edge with an arrow and its value written.
CLIP_FACTOR = 1.5


#: a light box behind written values, so that lines and bands do not cross the digits
_TEXT_BOX = dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.8)


def _decimals(lower: float, upper: float) -> int:
    """Decimals that tell ``lower`` from ``upper`` apart when written (2 to 4)."""
    for d in (2, 3, 4):
        if f"{lower:.{d}f}" != f"{upper:.{d}f}":
            return d
    return 4


def _fmt(v: float, d: int = 2) -> str:
    return f"{v:.{d}f}" if abs(v) < 1e4 else f"{v:.3g}"


def _axis_top(core: Sequence[float], uppers: Sequence[float]) -> tuple[float, float | None]:
    """``(top, clip)``: the top of the y axis, and the value above which an upper bound is drawn
    clipped (None: none is). ``core`` are the values always shown in full (lower bounds, point
    estimates, truths), ``uppers`` the upper bounds."""
    core = [v for v in core if v is not None and math.isfinite(v)]
    uppers = [v for v in uppers if v is not None and math.isfinite(v)]
    if not core or max(core) <= 0:
        return max(core + uppers + [0.0]), None
    ref = max(core)
    clip = max(CLIP_FACTOR * ref, ref + 1.0)
    if max(uppers, default=ref) <= clip:
        return max([ref] + uppers), None
    return clip, clip  # room up to the clip level, the clipped bounds marked at the top edge


def _set_ylim(ax, bottom_values: Sequence[float], top: float, keep_previous: bool) -> float:
    """Set the y range from 0 (or below the lowest value) to ``top`` plus room for labels; when
    ``keep_previous``, never shrink the range an earlier call set. Returns the new top."""
    lows = [v for v in bottom_values if v is not None and math.isfinite(v)]
    lo = min([0.0] + lows)
    span = max(top - lo, 1e-9)
    bottom, upper = lo - (0.04 * span if lo < 0 else 0.0), top + 0.14 * span
    if keep_previous:
        b0, t0 = ax.get_ylim()
        bottom, upper = min(bottom, b0), max(upper, t0)
    ax.set_ylim(bottom, upper)
    return upper


def _mark_clipped(ax, x: float, text: str, color: str, gid: str):
    """An upper bound above the axis: a caret at the top edge, ``text`` (its value) below it."""
    trans = ax.get_xaxis_transform()  # x in data, y in axes fraction: stays at the top edge
    ax.plot([x], [0.985], marker="^", color=color, markersize=8, linestyle="none", transform=trans,
            clip_on=False, gid=gid)
    return ax.annotate(text, (x, 0.985), xycoords=trans, xytext=(0, -7), textcoords="offset points",
                       ha="center", va="top", fontsize=7, color=color, gid=gid + ":value",
                       bbox=_TEXT_BOX)


def plot_bounds_vs_compute(
    estimates: Sequence[MIEstimate],
    compute: Sequence[float],
    *,
    xlabel: str = "K",
    truth: float | None = None,
    label: str | None = None,
    ax=None,
    path: str | None = None,
):
    """Lower and upper bounds (with ±2 s.e. bands) against a compute axis such as K or T (log x).

    Upper bounds above ``CLIP_FACTOR`` times the lower bounds and the truth are marked at the top
    edge with their values written, so that a loose bound at small K or T does not flatten the
    tight ones; the last sandwich's values are written beside it. Several calls on one ``ax``
    (``label=`` each) draw each series with its own line style and keep the range covering all.
    """
    if len(estimates) != len(compute):
        raise ValueError(f"got {len(estimates)} estimates but {len(compute)} compute values")
    fig, (ax,) = _figure(ax, width=7.0)  # room for the legend beside the axes
    previous = [ln for ln in ax.get_lines() if str(ln.get_gid() or "").startswith("bounds:lower")]
    series = len(previous)
    style = dict(marker="osD^v"[series % 5], linestyle=["-", "--", ":", "-."][series % 4])
    tag = f"{label}: " if label else ""
    gid_tag = label or str(series)
    lowers = [e.lower for e in estimates]
    uppers = [e.upper for e in estimates]
    top, clip = _axis_top([v for v in lowers if v is not None] + ([] if truth is None else [truth]),
                          [v for v in uppers if v is not None])
    for side, color in (("lower", "C0"), ("upper", "C3")):
        pts = [(c, getattr(e, side), getattr(e, f"{side}_se") or 0.0) for c, e in zip(compute, estimates)
               if getattr(e, side) is not None]
        if not pts:
            continue
        c, v, se = (list(t) for t in zip(*pts))
        ax.plot(c, v, color=color, label=f"{tag}{side} bound", gid=f"bounds:{side}:{gid_tag}", **style)
        ax.fill_between(c, [a - 2 * s for a, s in zip(v, se)], [a + 2 * s for a, s in zip(v, se)],
                        color=color, alpha=0.15, linewidth=0)
        if side == "upper" and clip is not None:
            for ci, vi in zip(c, v):
                if vi > clip:
                    _mark_clipped(ax, ci, f"{vi:.0f}" if vi >= 100 else f"{vi:.1f}", color,
                                  f"clipped:{gid_tag}:{ci}")
    last = next(((c, e) for c, e in zip(reversed(list(compute)), reversed(list(estimates)))
                 if e.lower is not None and e.upper is not None), None)
    if last is not None and (clip is None or last[1].upper <= clip):
        c, e = last
        d = _decimals(e.lower, e.upper)
        ax.annotate(f"[{_fmt(e.lower, d)}, {_fmt(e.upper, d)}]", (c, e.upper), xytext=(0, 6),
                    textcoords="offset points", ha="right", va="bottom", fontsize=7,
                    gid=f"bounds:last:{gid_tag}", bbox=_TEXT_BOX)
    if truth is not None:
        ax.axhline(truth, color="k", linestyle="--", linewidth=1, label=f"truth {truth:.3f}", gid="truth")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("I(x; z) [nats]")
    _set_ylim(ax, lowers, top, keep_previous=bool(previous))
    if clip is not None:
        ax.plot([], [], marker="^", color="C3", linestyle="none", label="upper bound off scale (value written)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _finish(fig, path)


def _draw_bounds(ax, x: float, e: MIEstimate, clip: float | None, name: str, *, halfwidth: float = 0.3):
    """One estimate at ``x``: half caps at the lower (C0, left) and upper (C3, right) bounds joined
    by a light band, a triangle for a one-sided bound (pointing to where the truth lies), a dot
    and caps for a point estimate with its interval; the values written above. An upper end above
    ``clip`` is marked at the top edge instead."""
    lo, hi = e.lower, e.upper
    cap = dict(linewidth=2.4, solid_capstyle="butt", zorder=3)
    if lo is not None and hi is not None:
        d = _decimals(lo, hi)
        clipped = clip is not None and hi > clip
        band_top = ax.get_ylim()[1] if clipped else hi
        ax.plot([x, x], [lo, band_top], color="C0" if e.point is None else "C4", linewidth=6,
                alpha=0.25, solid_capstyle="butt", gid=f"band:{name}")
        color_lo, color_hi = ("C0", "C3") if e.point is None else ("C4", "C4")
        # half caps, lower on the left and upper on the right: both stay visible when they coincide
        ax.plot([x - halfwidth, x], [lo, lo], color=color_lo, gid=f"lower:{name}", **cap)
        if e.point is not None:
            ax.plot([x], [e.point], marker="o", color="C4", linestyle="none", gid=f"point:{name}", zorder=3)
        text = f"[{_fmt(lo, d)}, {_fmt(hi, d)}]"
        if e.point is not None:
            text = f"{_fmt(e.point, d)}\n{text}"
        if clipped:
            _mark_clipped(ax, x, f"{text}\nupper off scale", color_hi, f"upper-clipped:{name}")
        else:
            ax.plot([x, x + halfwidth], [hi, hi], color=color_hi, gid=f"upper:{name}", **cap)
            ax.annotate(text, (x, hi), xytext=(0, 5), textcoords="offset points", ha="center",
                        va="bottom", fontsize=7, gid=f"label:{name}", bbox=_TEXT_BOX)
    elif lo is not None:  # a lower bound, or an interval open above (MIST beyond its range)
        ax.plot([x], [lo], marker="^", color="C0", markersize=9, linestyle="none", gid=f"lower:{name}")
        text, at = f"≥ {_fmt(lo)}", lo
        if e.point is not None:
            ax.plot([x], [e.point], marker="o", color="C4", linestyle="none", gid=f"point:{name}", zorder=3)
            text, at = f"{_fmt(e.point)}\n[{_fmt(lo)}, ∞)", max(lo, e.point)
        ax.annotate(text, (x, at), xytext=(0, 7), textcoords="offset points", ha="center",
                    va="bottom", fontsize=7, gid=f"label:{name}", bbox=_TEXT_BOX)
    elif hi is not None:
        if clip is not None and hi > clip:
            _mark_clipped(ax, x, f"≤ {_fmt(hi)}\noff scale", "C3", f"upper-clipped:{name}")
        else:
            ax.plot([x], [hi], marker="v", color="C3", markersize=9, linestyle="none", gid=f"upper:{name}")
            ax.annotate(f"≤ {_fmt(hi)}", (x, hi), xytext=(0, 7), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7, gid=f"label:{name}", bbox=_TEXT_BOX)


def _legend_handles(any_two_sided: bool, any_lower_only: bool, any_upper_only: bool, any_point: bool,
                    any_clipped: bool, truth_label: str | None):
    from matplotlib.lines import Line2D

    h = []
    if any_two_sided:
        h += [Line2D([], [], color="C0", linewidth=2.4, label="lower bound (left cap)"),
              Line2D([], [], color="C3", linewidth=2.4, label="upper bound (right cap)")]
    if any_lower_only:
        h.append(Line2D([], [], color="C0", marker="^", linestyle="none", label="lower bound only"))
    if any_upper_only:
        h.append(Line2D([], [], color="C3", marker="v", linestyle="none", label="upper bound only"))
    if any_point:
        h.append(Line2D([], [], color="C4", marker="o", linestyle="none", label="estimate, interval"))
    if any_clipped:
        h.append(Line2D([], [], color="C3", marker="^", linestyle="none",
                        label="upper bound off scale (value written)"))
    if truth_label:
        h.append(Line2D([], [], color="k", linestyle="--", linewidth=1, label=truth_label))
    return h


def plot_sandwiches(
    estimates: Mapping[str, MIEstimate],
    *,
    truth: float | Mapping[str, float] | None = None,
    ax=None,
    path: str | None = None,
):
    """The bounds of each estimate, side by side: caps at the lower and upper bound with their
    values written (a triangle for a one-sided bound; the interval for point estimates), and the
    truth when known (one value, a line across, or one per estimate).

    The lower bound is a half cap on the left, the upper bound one on the right: a sandwich 0.02
    nats wide shows as two halves at one height, with both values written, readable on any scale. An upper bound above ``CLIP_FACTOR`` times the other values
    (lower bounds, estimates, truths) is marked at the top edge with its value, so that a loose
    bound does not flatten the rest.
    """
    if not estimates:
        raise ValueError("plot_sandwiches needs at least one estimate: estimates={name: MIEstimate, ...}")
    fig, (ax,) = _figure(ax, width=max(5.0, 0.9 * len(estimates) + 2) + 1.8)  # + the legend
    names = list(estimates)
    truths = {n: (truth.get(n) if isinstance(truth, Mapping) else truth) for n in names}
    core = [v for n in names for v in (estimates[n].lower, estimates[n].point, truths[n])
            if v is not None]
    core += [estimates[n].upper for n in names if estimates[n].lower is None or estimates[n].point is not None]
    uppers = [estimates[n].upper for n in names
              if estimates[n].lower is not None and estimates[n].point is None and estimates[n].upper is not None]
    top, clip = _axis_top(core, uppers)
    _set_ylim(ax, [v for n in names for v in (estimates[n].lower, truths[n])], top,
              keep_previous=False)
    for i, name in enumerate(names):
        _draw_bounds(ax, i, estimates[name], clip, name)
    if isinstance(truth, Mapping):
        for i, name in enumerate(names):
            if truths[name] is not None:
                ax.plot([i - 0.4, i + 0.4], [truths[name]] * 2, color="k", linestyle="--", linewidth=1,
                        gid=f"truth:{name}", zorder=1)
    elif truth is not None:
        ax.axhline(truth, color="k", linestyle="--", linewidth=1, gid="truth", zorder=1)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("I(x; z) [nats]")
    es = [estimates[n] for n in names]
    handles = _legend_handles(
        any(e.lower is not None and e.upper is not None and e.point is None for e in es),
        any(e.lower is not None and e.upper is None for e in es),
        any(e.upper is not None and e.lower is None for e in es),
        any(e.point is not None for e in es),
        clip is not None,
        None if truth is None else ("truth" if isinstance(truth, Mapping) else f"truth {truth:.3f}"),
    )
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _finish(fig, path)


def plot_ais_diagnostics(est: MIEstimate, *, path: str | None = None, ax=None):
    """AIS diagnostics per temperature: mean acceptance (forward chains) and median step size,
    against beta (log scale), with the betas of the schedule."""
    d = est.diagnostics
    if "acceptance" not in d or "step_size" not in d:
        raise ValueError("plot_ais_diagnostics needs an estimate from bound='ais'")
    fig, axes = _figure(ax, ncols=2)
    betas = d["betas"]
    if betas.dim() == 2:  # one schedule per block of samples: show the first
        betas = betas[0]
    betas = betas.double().cpu()
    acc = d["acceptance"].double().cpu()  # (T - 1, N), levels 1..T-1
    eps = d["step_size"].double().cpu()  # (T + 1, N)
    T = betas.numel() - 1
    if acc.shape[0] > 0:
        b = betas[1:T]
        axes[0].plot(b, acc.mean(1), color="C0", label="mean over samples")
        axes[0].fill_between(b, acc.quantile(0.1, 1), acc.quantile(0.9, 1), color="C0", alpha=0.2,
                             linewidth=0, label="10-90% of samples")
    target = est.settings.get("target_accept")
    if target is not None:
        axes[0].axhline(target, color="k", linestyle="--", linewidth=1, label=f"target {target}")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("beta")
    axes[0].set_ylabel("HMC acceptance")
    axes[0].set_ylim(0, 1.02)
    axes[0].legend(fontsize=8)
    axes[1].plot(betas[1:], eps[1:].median(1).values, color="C1")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("beta")
    axes[1].set_ylabel("step size (median over samples)")
    axes[1].set_title(f"T = {T}, divergences = {d.get('divergences', 0)}", fontsize=8)
    return _finish(fig, path)


def plot_mist_intervals(
    estimates: Sequence[MIEstimate],
    *,
    truths: Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
    others: Mapping[str, Sequence[float]] | None = None,
    ax=None,
    path: str | None = None,
):
    """MIST medians with their intervals (error bars), the truths, and other estimators' values
    (e.g. ``others={"KSG": [...]}``), one column per data set."""
    fig, (ax,) = _figure(ax, width=max(5.0, 0.7 * len(estimates) + 2))
    xs = list(range(len(estimates)))
    med = [e.value for e in estimates]
    lo = [e.value - e.lower for e in estimates]
    hi = [0.0 if e.upper is None else e.upper - e.value for e in estimates]
    level = estimates[0].level if estimates and estimates[0].level else None
    ax.errorbar(xs, med, yerr=[lo, hi], fmt="o", color="C0", capsize=3,
                label=f"MIST median, {100 * level:.0f}% interval" if level else "MIST")
    open_ = [i for i, e in enumerate(estimates) if e.upper is None]
    if truths is not None:
        ax.plot(xs, truths, "k_", markersize=16, mew=2, label="truth")
    for j, (name, vals) in enumerate((others or {}).items()):
        ax.plot(xs, vals, marker="x", linestyle="none", color=f"C{j + 1}", label=name)
    if labels is not None:
        ax.set_xticks(xs, labels, rotation=20, ha="right", fontsize=8)
    # an interval open above (the sample lies beyond the weights' training range): a dotted line
    # from the median to the top edge, and a caret there
    if open_:
        bottom, top = ax.get_ylim()
        top += 0.12 * (top - bottom)  # room for the caret and its label above every value
        ax.set_ylim(bottom, top)
        for i in open_:
            ax.plot([xs[i], xs[i]], [med[i], top], color="C3", linestyle=":", gid=f"open:{i}")
            _mark_clipped(ax, xs[i], "open\nabove", "C3", f"open-caret:{i}")
        ax.plot([], [], marker="^", color="C3", linestyle=":", label="interval unbounded above")
    ax.set_ylabel("I(x; y) [nats]")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_audit(report, *, path: str | None = None, ax=None):
    """Left: the model's MI sandwich (caps at the bounds, values written) beside the encoder's
    rate; right: per-site rates."""
    fig, axes = _figure(ax, ncols=2 if report.sites else 1)
    m = report.mi
    a0 = axes[0]
    core = [v for v in (m.lower, report.rate) if v is not None]
    top, clip = _axis_top(core, [] if m.upper is None else [m.upper])
    if report.rate is not None:
        top = max(top, report.rate + 2 * (report.rate_se or 0.0))
    _set_ylim(a0, [m.lower], top, keep_previous=False)
    if m.lower is not None and m.lower > 0:  # the region certainly below I(x; z)
        a0.bar(0, m.lower, width=0.5, color="C0", alpha=0.2)
    _draw_bounds(a0, 0, m, clip, "mi", halfwidth=0.25)
    names = ["I(x; z) model"]
    if report.rate is not None:
        a0.bar(1, report.rate, width=0.5, color="C1", alpha=0.7,
               yerr=2 * (report.rate_se or 0.0), capsize=3, gid="rate")
        names.append(f"encoder rate R\n{report.rate:.2f}")
    a0.set_xticks(range(len(names)), names, fontsize=8)
    a0.set_xlim(-0.6, len(names) - 0.4)
    a0.set_ylabel("nats")
    handles = _legend_handles(m.lower is not None and m.upper is not None, False, False, False,
                              clip is not None, None)
    if handles:
        a0.legend(handles=handles, fontsize=7, loc="lower right")
    if report.sites:
        a1 = axes[1]
        sites = report.sites
        a1.bar(range(len(sites)), [s.rate for s in sites], color="C1", alpha=0.7,
               yerr=[2 * s.rate_se for s in sites], capsize=3)
        a1.set_xticks(range(len(sites)),
                      [f"{s.name}\n{s.active_units}/{s.dim} active" for s in sites], fontsize=8)
        a1.set_ylabel("rate per site [nats]")
        a1.axhline(report.settings.get("collapse_threshold", 0.0), color="k", linestyle=":", linewidth=1)
    if report.flags:
        fig.suptitle("; ".join(f.split(":")[0] for f in report.flags), fontsize=8)
    return _finish(fig, path)
