"""Plots of bounds, AIS diagnostics, MIST intervals and audits (matplotlib, optional dependency).

Every function draws on a given ``ax`` or on a new :class:`matplotlib.figure.Figure` (built without
pyplot, so it renders without a display and never changes the user's backend), saves it to
``path`` when given, and returns the Figure. All values are in nats.
"""

from __future__ import annotations

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
    """Lower and upper bounds (with ±2 s.e. bands) against a compute axis such as K or T (log x)."""
    if len(estimates) != len(compute):
        raise ValueError(f"got {len(estimates)} estimates but {len(compute)} compute values")
    fig, (ax,) = _figure(ax)
    tag = f"{label}: " if label else ""
    for side, color in (("lower", "C0"), ("upper", "C3")):
        pts = [(c, getattr(e, side), getattr(e, f"{side}_se") or 0.0) for c, e in zip(compute, estimates)
               if getattr(e, side) is not None]
        if not pts:
            continue
        c, v, se = (list(t) for t in zip(*pts))
        ax.plot(c, v, "o-", color=color, label=f"{tag}{side} bound")
        ax.fill_between(c, [a - 2 * s for a, s in zip(v, se)], [a + 2 * s for a, s in zip(v, se)],
                        color=color, alpha=0.15, linewidth=0)
    if truth is not None:
        ax.axhline(truth, color="k", linestyle="--", linewidth=1, label=f"truth {truth:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("I(x; z) [nats]")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_sandwiches(
    estimates: Mapping[str, MIEstimate],
    *,
    truth: float | Mapping[str, float] | None = None,
    ax=None,
    path: str | None = None,
):
    """One bar per estimate from its lower to its upper bound (a marker for one-sided bounds; the
    interval for point estimates), with the truth when known (one value or one per estimate)."""
    fig, (ax,) = _figure(ax, width=max(5.0, 0.9 * len(estimates) + 2))
    names = list(estimates)
    top = 0.0
    for i, name in enumerate(names):
        e = estimates[name]
        if e.lower is not None and e.upper is not None:
            ax.bar(i, e.upper - e.lower, bottom=e.lower, width=0.6, color="C0", alpha=0.6)
            top = max(top, e.upper)
            if e.point is not None:
                ax.plot([i - 0.3, i + 0.3], [e.point, e.point], color="C0")
        if e.lower is not None and e.upper is None:
            ax.plot(i, e.lower, marker="^", color="C2", markersize=9)
            top = max(top, e.lower)
        if e.upper is not None and e.lower is None:
            ax.plot(i, e.upper, marker="v", color="C3", markersize=9)
            top = max(top, e.upper)
        t = truth.get(name) if isinstance(truth, Mapping) else truth
        if t is not None:
            ax.plot([i - 0.4, i + 0.4], [t, t], color="k", linestyle="--", linewidth=1)
            top = max(top, t)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("I(x; z) [nats]")
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]), top=1.1 * top if top > 0 else None)
    ax.set_title("bars: sandwich · ▲ lower bound · ▼ upper bound · dashes: truth", fontsize=8)
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
    # an interval open above (the sample lies beyond the weights' training range): an arrow up
    open_ = [i for i, e in enumerate(estimates) if e.upper is None]
    if open_:
        ax.plot([xs[i] for i in open_], [med[i] for i in open_], marker="^", linestyle="none",
                color="C3", markersize=10, label="interval unbounded above")
    if truths is not None:
        ax.plot(xs, truths, "k_", markersize=16, mew=2, label="truth")
    for j, (name, vals) in enumerate((others or {}).items()):
        ax.plot(xs, vals, marker="x", linestyle="none", color=f"C{j + 1}", label=name)
    if labels is not None:
        ax.set_xticks(xs, labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("I(x; y) [nats]")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_audit(report, *, path: str | None = None, ax=None):
    """Left: the model's MI sandwich beside the encoder's rate; right: per-site rates."""
    fig, axes = _figure(ax, ncols=2 if report.sites else 1)
    m = report.mi
    a0 = axes[0]
    lo, up = min(m.lower, m.upper), max(m.lower, m.upper)
    a0.bar(0, max(lo, 0.0), width=0.5, color="C0", alpha=0.7, label="<= lower bound")
    a0.bar(0, up - lo, bottom=lo, width=0.5, color="none", edgecolor="C0", hatch="///",
           label="sandwich [lower, upper]")
    a0.plot([-0.25, 0.25], [up, up], color="C0")
    a0.legend(fontsize=7, loc="lower right")
    names = [f"I(x; z) model\n[{m.lower:.2f}, {m.upper:.2f}]"]
    if report.rate is not None:
        a0.bar(1, report.rate, width=0.5, color="C1", alpha=0.7,
               yerr=2 * (report.rate_se or 0.0), capsize=3)
        names.append(f"encoder rate R\n{report.rate:.2f}")
    a0.set_xticks(range(len(names)), names, fontsize=8)
    a0.set_ylabel("nats")
    a0.set_ylim(bottom=0)
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
