"""MIEstimate: value, units, intervals, repr."""

import math

import pytest
import torch

from pyromi import LearnedEstimate, MIEstimate


def est(lower=13.9, upper=14.6):
    return MIEstimate(lower=lower, upper=upper, lower_se=0.05, upper_se=0.1, bound="iwae",
                      num_samples=256, num_particles=1000,
                      terms={"lower": torch.full((4,), 13.9, dtype=torch.float64)})


def test_value_is_midpoint_or_the_single_side():
    assert est().value == pytest.approx(14.25)
    assert est().width == pytest.approx(0.7)
    assert est(upper=None).value == 13.9
    assert est(lower=None).value == 14.6


def test_bits_conversion():
    b = est().to_bits()
    assert b.units == "bits"
    assert b.lower == pytest.approx(13.9 / math.log(2))
    assert b.upper_se == pytest.approx(0.1 / math.log(2))
    assert float(b.terms["lower"][0]) == pytest.approx(13.9 / math.log(2))
    assert b.to_nats().lower == pytest.approx(13.9)


def test_interval_widens_by_standard_errors():
    lo, hi = est().interval(0.975)
    assert lo == pytest.approx(13.9 - 1.959964 * 0.05, abs=1e-5)
    assert hi == pytest.approx(14.6 + 1.959964 * 0.1, abs=1e-5)
    with pytest.raises(ValueError):
        est().interval(1.5)


def test_repr_is_readable():
    assert repr(est()) == "I(x; z) in [13.900, 14.600] nats (iwae, N=256, K=1000; s.e. 0.050 / 0.100)"
    assert repr(est(upper=None)).startswith("I(x; z) >= 13.900 nats")
    assert "bits" in str(est().to_bits())


def _from_terms(lower, upper):
    return MIEstimate.from_terms("iwae", lower, upper, num_particles=10, settings={}, diagnostics={},
                                 observed=("x",), latent=("z",))


def test_one_draw_has_no_standard_error():
    """At N = 1 a standard error is undefined: nan (never 0.0), printed "s.e. n/a (N=1)" (never
    "nan"), and interval() refuses to widen by it; N = 2 is unaffected."""
    one = _from_terms(torch.tensor([1.5], dtype=torch.float64), torch.tensor([1.75], dtype=torch.float64))
    assert math.isnan(one.lower_se) and math.isnan(one.upper_se) and one.num_samples == 1
    assert repr(one) == "I(x; z) in [1.500, 1.750] nats (iwae, N=1, K=10; s.e. n/a (N=1))"
    with pytest.raises(ValueError, match=r"standard error is undefined with N=1.*num_samples >= 2"):
        one.interval()
    lower_only = _from_terms(torch.tensor([1.5]), None)
    assert str(lower_only) == "I(x; z) >= 1.500 nats (iwae, N=1, K=10; s.e. n/a (N=1))"
    crossed = _from_terms(torch.tensor([2.0]), torch.tensor([1.0]))
    assert "nan" not in repr(crossed) and "Monte Carlo error is unknown" in repr(crossed)
    assert "nan" not in repr(one.to_bits())
    two = _from_terms(torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([2.0, 2.0], dtype=torch.float64))
    assert two.lower_se == pytest.approx(0.5) and two.upper_se == 0.0
    assert two.interval(0.975)[0] == pytest.approx(1.5 - 1.959964 * 0.5, abs=1e-5)


def test_point_estimate_intervals_by_level():
    """A predictive interval (point set) returns its stored intervals by level and refuses others; an
    upper end at infinity prints as an open interval."""
    e = LearnedEstimate(point=0.9, lower=0.4, upper=1.6, level=0.9, bound="mist", num_samples=500,
                        intervals={0.5: (0.7, 1.1), 0.9: (0.4, 1.6)})
    assert e.interval() == (0.4, 1.6) and e.interval(0.5) == (0.7, 1.1)
    with pytest.raises(ValueError, match=r"levels \[0\.5, 0\.9\] only, not 0\.95.*level=0\.95"):
        e.interval(0.95)
    with pytest.raises(ValueError, match="level must be"):
        e.interval(1.0)
    assert e.to_bits().interval(0.5) == pytest.approx((0.7 / math.log(2), 1.1 / math.log(2)))
    from dataclasses import replace

    open_ = replace(e, upper=None, intervals={0.9: (0.4, None)})
    assert repr(open_) == "I(x; z) ~= 0.900 nats, 90% interval [0.400, inf) (mist, N=500)"


def _ais_like(n=8, k=4, levels=6):
    """An AIS-shaped estimate: K = 4 chains per sample, fewer than the N = 8 samples (the layout
    that made arviz warn 'More chains than draws')."""
    g = torch.Generator().manual_seed(0)
    lw = torch.randn(k, n, generator=g, dtype=torch.float64)
    diagnostics = {
        "log_weights": lw, "log_weight_backward": torch.randn(n, dtype=torch.float64, generator=g),
        "acceptance": torch.rand(levels - 2, n, generator=g), "step_size": torch.rand(levels, n, generator=g),
        "betas": torch.linspace(0, 1, levels, dtype=torch.float64), "ess_fraction": torch.rand(n, generator=g),
        "pareto_k": torch.rand(n, generator=g), "bdmc_gap": torch.rand(n, generator=g),
    }
    terms = {"lower": torch.randn(n, dtype=torch.float64, generator=g),
             "upper": torch.randn(n, dtype=torch.float64, generator=g) + 1}
    return MIEstimate.from_terms("ais", terms["lower"], terms["upper"], num_particles=k, settings={},
                                 diagnostics=diagnostics, observed=("x",), latent=("z",)), lw


@pytest.mark.filterwarnings("error")
def test_inference_data_layout_is_chain_draw_without_warnings():
    """One chain of K draws (the K independent final log-weights) per joint sample, shape
    (1, K, N); per-sample values under a 'sample' dimension; no warning from arviz."""
    e, lw = _ais_like()
    idata = e.to_inference_data()
    w = idata.sample_stats["log_weight"]
    assert w.dims == ("chain", "draw", "sample") and w.shape == (1, 4, 8)
    assert torch.equal(torch.from_numpy(w.values[0]), lw)  # draw k, sample i = log w_k(x_i)
    c = idata.constant_data
    assert c["mi_lower_term"].dims == ("sample",) and c["mi_lower_term"].shape == (8,)
    assert c["log_weight_backward"].dims == ("sample",)
    assert c["acceptance"].shape == (4, 8) and c["beta"].shape == (6,)
    assert idata.attrs["bound"] == "ais" and idata.attrs["num_particles"] == 4
    # more chains than samples, and an estimate without log-weights (IWAE): no warning either
    _ais_like(n=3, k=16)[0].to_inference_data()
    est().to_inference_data()
