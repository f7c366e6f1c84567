"""Figures show the bounds themselves: every cap, marker and written value carries the number it
stands for, tight sandwiches stay readable, and a loose bound does not flatten the rest."""

from __future__ import annotations

import pytest
import torch

from pyromi import LearnedEstimate, MIEstimate, plots

pytest.importorskip("matplotlib")


def E(lower, upper, bound="iwae", se=0.1, point=None, level=None):
    if point is not None:  # a learned estimate (MIST): a median and a predictive interval
        return LearnedEstimate(point=point, lower=lower, upper=upper, level=level, bound=bound, num_samples=256)
    return MIEstimate(lower=lower, upper=upper, lower_se=None if lower is None else se,
                      upper_se=None if upper is None else se, bound=bound, num_samples=256,
                      num_particles=16)


def artists(ax, gid):
    found = [a for a in [*ax.get_lines(), *ax.texts] if a.get_gid() == gid]
    assert found, f"no artist with gid {gid!r}"
    return found[0]


def ys(line):
    return [float(v) for v in line.get_ydata()]


def test_tight_sandwich_beside_a_loose_one(tmp_path):
    """AIS [18.74, 18.76] beside IWAE [5.2, 95.0], truth 18.75: both AIS caps sit at their values
    and are written; the 95-nat upper bound is marked off scale with its value, so the axis ends
    well below it and the AIS sandwich is not squashed at the bottom."""
    fig = plots.plot_sandwiches({"ais": E(18.74, 18.76, "ais"), "iwae": E(5.2, 95.0)}, truth=18.75,
                                path=str(tmp_path / "s.png"))
    ax = fig.axes[0]
    assert ys(artists(ax, "lower:ais")) == [18.74, 18.74]
    assert ys(artists(ax, "upper:ais")) == [18.76, 18.76]
    assert artists(ax, "label:ais").get_text() == "[18.74, 18.76]"
    assert ys(artists(ax, "lower:iwae")) == [5.2, 5.2]
    assert not [a for a in ax.get_lines() if a.get_gid() == "upper:iwae"]
    assert "95.00" in artists(ax, "upper-clipped:iwae:value").get_text()
    assert ys(artists(ax, "truth")) == [18.75, 18.75]
    bottom, top = ax.get_ylim()
    assert bottom == 0.0 and 18.76 < top < 40.0  # the clipped bound does not set the scale
    assert (tmp_path / "s.png").stat().st_size > 0


def test_three_tight_sandwiches_across_a_sweep():
    """Tight sandwiches (a beta sweep): every bound drawn and written with enough decimals to tell
    lower from upper (10.507 / 10.512 need three); nothing clipped."""
    sweep = {"beta=0.5": (16.28, 16.33), "beta=4": (15.18, 15.19), "beta=16": (10.507, 10.512)}
    fig = plots.plot_sandwiches({k: E(lo, hi, "ais") for k, (lo, hi) in sweep.items()})
    ax = fig.axes[0]
    for name, (lo, hi) in sweep.items():
        assert ys(artists(ax, f"lower:{name}")) == [lo, lo]
        assert ys(artists(ax, f"upper:{name}")) == [hi, hi]
    assert artists(ax, "label:beta=16").get_text() == "[10.507, 10.512]"
    assert artists(ax, "label:beta=4").get_text() == "[15.18, 15.19]"
    assert not [a for a in ax.get_lines() if str(a.get_gid()).startswith("upper-clipped")]
    assert 16.33 < ax.get_ylim()[1] < 20.0


def test_one_sided_bounds_points_and_per_estimate_truths():
    ests = {"ba": E(13.684, None, "ba"), "clue": E(None, 20.0), "mist": E(0.4, 1.6, "mist", point=0.9, level=0.9)}
    fig = plots.plot_sandwiches(ests, truth={"ba": 14.275, "mist": 1.0})
    ax = fig.axes[0]
    lower = artists(ax, "lower:ba")
    assert ys(lower) == [13.684] and lower.get_marker() == "^"
    assert artists(ax, "label:ba").get_text() == "≥ 13.68"
    upper = artists(ax, "upper:clue")
    assert ys(upper) == [20.0] and upper.get_marker() == "v"
    assert ys(artists(ax, "point:mist")) == [0.9]
    assert ys(artists(ax, "lower:mist")) == [0.4, 0.4] and ys(artists(ax, "upper:mist")) == [1.6, 1.6]
    assert ys(artists(ax, "truth:ba")) == [14.275, 14.275]
    with pytest.raises(ValueError, match="at least one estimate"):
        plots.plot_sandwiches({})


def test_bounds_vs_compute_clips_loose_uppers_and_overlays_series():
    """Prior IWAE uppers of 1e3-1e4 nats are marked at the top edge with their values; the lines
    carry every bound; a second series on the same axes gets its own line style and the range
    covers both."""
    ks = [10, 100, 1000]
    prior = [E(2.3, 16141.0), E(4.61, 5737.6), E(6.91, 2441.8)]
    guide = [E(21.7, 23.6), E(22.35, 22.76), E(22.475, 22.528)]
    fig = plots.plot_bounds_vs_compute(prior, ks, truth=22.312, label="prior")
    ax = fig.axes[0]
    assert ys(artists(ax, "bounds:lower:prior")) == [2.3, 4.61, 6.91]
    assert ys(artists(ax, "bounds:upper:prior")) == [16141.0, 5737.6, 2441.8]
    assert [artists(ax, f"clipped:prior:{k}:value").get_text() for k in ks] == ["16141", "5738", "2442"]
    top = ax.get_ylim()[1]
    assert 22.312 < top < 60.0
    plots.plot_bounds_vs_compute(guide, ks, label="q", ax=ax)
    assert ys(artists(ax, "bounds:upper:q")) == [23.6, 22.76, 22.528]
    assert artists(ax, "bounds:upper:q").get_linestyle() != artists(ax, "bounds:upper:prior").get_linestyle()
    assert artists(ax, "bounds:last:q").get_text() == "[22.48, 22.53]"
    assert ax.get_ylim()[1] >= top


def test_sandwich_across_compute_without_clipping():
    """An AIS sweep whose loosest upper bound (24.5) is within the clip range: drawn to scale."""
    ts = [100, 1000, 4000]
    ests = [E(19.93, 24.51, "ais"), E(22.32, 22.60, "ais"), E(22.504, 22.544, "ais")]
    fig = plots.plot_bounds_vs_compute(ests, ts, xlabel="T", truth=22.312)
    ax = fig.axes[0]
    assert not [t for t in ax.texts if str(t.get_gid()).startswith("clipped:")]
    assert 24.51 < ax.get_ylim()[1] < 30.0
    assert artists(ax, "bounds:last:0").get_text() == "[22.50, 22.54]"


def test_audit_plot_draws_the_sandwich_caps():
    from pyromi.audit import AuditReport, SiteAudit

    rep = AuditReport(mi=E(16.45, 16.47, "ais"), rate=17.01, rate_se=0.1, distortion=-49.6,
                      sites=(SiteAudit("z", 8, 17.01, 0.1, 8, torch.ones(8)),),
                      settings={"collapse_threshold": 0.1})
    ax = plots.plot_audit(rep).axes[0]
    assert ys(artists(ax, "lower:mi")) == [16.45, 16.45] and ys(artists(ax, "upper:mi")) == [16.47, 16.47]
    assert artists(ax, "label:mi").get_text() == "[16.45, 16.47]"


def test_mist_interval_open_above_reaches_the_top_edge():
    ests = [E(0.4, 1.6, "mist", point=0.9, level=0.9), E(15.2, None, "mist", point=16.0, level=0.9)]
    ax = plots.plot_mist_intervals(ests, truths=[1.0, 23.0]).axes[0]
    line = artists(ax, "open:1")
    assert ys(line)[0] == 16.0 and ys(line)[1] == ax.get_ylim()[1] > 23.0
