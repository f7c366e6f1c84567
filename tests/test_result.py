"""MIEstimate: value, units, intervals, repr."""

import math

import pytest
import torch

from pyromi import MIEstimate


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
