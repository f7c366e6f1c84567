"""The user API as one function per method: ``mutual_information`` dispatches through ``METHODS``,
each function takes only its own keywords, and a misapplied keyword is an ``OptionError`` (a
``TypeError``) naming the bounds that use it."""

import inspect
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyromi
from pyromi import BOUNDS, METHODS, LearnedEstimate, MIEstimate, OptionError, mutual_information
from pyromi.api import keywords
from pyromi.models import LinearGaussian

SHARED = {"num_samples", "seed", "model_args", "model_kwargs", "device", "dtype", "data_plate", "vectorize"}


def gauss():
    z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    pyro.sample("x", dist.Normal(z, 0.5).to_event(1))


def test_every_bound_has_a_function_with_the_shared_keywords():
    assert set(METHODS) == set(BOUNDS)
    for bound in METHODS:
        assert SHARED <= keywords(bound), bound
    # keywords are each method's own: no AIS option on IWAE, no critic on the density bounds
    assert "num_steps" not in keywords("iwae") and "critic" not in keywords("ais")
    assert "num_particles" not in keywords("ba") and "level" in keywords("mist") and "progress" in keywords("mist")
    assert "variant" not in keywords("mine_dv")  # fixed by the bound name


@pytest.mark.parametrize("bound, fn, kw", [
    ("iwae", pyromi.iwae_mi, dict(num_particles=64)),
    ("ais", pyromi.ais_mi, dict(num_particles=4, num_steps=20, progress=False)),
    ("mist", pyromi.mist_mi, dict()),
])
def test_dispatcher_is_the_method_function(bound, fn, kw):
    """The same seed through the dispatcher or the function gives the same numbers."""
    a = mutual_information(gauss, "x", bound=bound, num_samples=200, seed=3, **kw)
    b = fn(gauss, "x", num_samples=200, seed=3, **kw)
    assert type(a) is type(b)
    assert (a.lower, a.upper, a.value) == (b.lower, b.upper, b.value)


def test_trained_functions_match_the_dispatcher():
    kw = dict(num_samples=64, num_particles=8, train_steps=20, batch_size=32, seed=1)
    a = mutual_information(gauss, "x", bound="mine_f", **kw)
    b = pyromi.mine_mi(gauss, "x", variant="f", **kw)
    assert a.bound == b.bound == "mine_f" and a.lower == b.lower
    c = mutual_information(gauss, "x", bound="infonce", **kw)
    assert c.bound == "infonce" and c.lower == pyromi.infonce_mi(gauss, "x", **kw).lower
    assert c.lower <= math.log(8) + 1e-9


@pytest.mark.parametrize("bound, options, used_by", [
    ("iwae", dict(num_steps=1000), "'ais', 'mine_ais'"),           # even at the AIS default
    ("ais", dict(critic=torch.nn.Linear(1, 1)), "'giwae', 'infonce'"),
    ("giwae", dict(level=0.9), "'mist'"),
    ("mist", dict(num_particles=10), "'ais'"),
    ("mist", dict(joint=object()), "'ais'"),
    ("ba", dict(num_particles=10), "'ais'"),                     # BA has no K: it was silently ignored
    ("mine_dv", dict(given="z"), "'ais', 'iwae'"),
])
def test_a_misapplied_keyword_is_an_option_error(bound, options, used_by):
    name = next(iter(options))
    with pytest.raises(OptionError, match=rf"bound={bound!r} does not use {name}=: {name}= is used by bound=.*"
                                          rf"{used_by}") as info:
        mutual_information(gauss, "x", bound=bound, **options)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_none_means_not_given_for_every_option():
    """One loop can pass the same keywords to every bound: None is "not given"."""
    common = dict(given=None, num_steps=None, critic=None, level=None, joint=None)
    e = mutual_information(gauss, "x", bound="iwae", num_samples=32, num_particles=16, seed=0, **common)
    assert e.settings["given"] == [] and e.bound == "iwae"
    with pytest.raises(OptionError, match="does not use num_steps="):
        mutual_information(gauss, "x", bound="iwae", num_steps=0)


def test_a_misspelt_keyword_names_the_one_meant():
    with pytest.raises(OptionError, match=r"num_step= \(did you mean num_steps=\?\)"):
        mutual_information(gauss, "x", bound="ais", num_step=10)
    with pytest.raises(TypeError, match="variant"):
        mutual_information(gauss, "x", bound="mine_dv", variant="f")
    with pytest.raises(TypeError):  # a direct call: Python's own TypeError
        pyromi.iwae_mi(gauss, "x", num_steps=10)
    with pytest.raises(ValueError, match="unknown bound='aiss'"):
        mutual_information(gauss, "x", bound="aiss")


def test_ba_with_a_given_guide_refuses_training_options():
    from pyromi import AmortizedNormal

    with pytest.raises(OptionError, match="train_steps= is unused"):
        pyromi.ba_mi(gauss, "x", guide=AmortizedNormal(pyromi.ModelAdapter(gauss, "x")), train_steps=10)


def test_mist_returns_a_learned_estimate_not_bounds():
    e = mutual_information(gauss, "x", bound="mist", num_samples=300, seed=0, level=0.8)
    assert isinstance(e, LearnedEstimate) and not isinstance(e, MIEstimate)
    assert e.value == e.point and e.level == 0.8 and e.interval() == (e.lower, e.upper)
    assert e.lower <= e.point <= e.upper
    lo9, hi9 = e.interval(0.9)  # a calibrated level: stored, wider than the 80% one
    assert lo9 <= e.lower and hi9 >= e.upper
    with pytest.raises(ValueError, match="cannot be rescaled"):
        e.interval(0.77)
    assert e.lower_se is None and e.terms == {} and "90% interval" not in repr(e) and "80% interval" in repr(e)
    bits = e.to_bits()
    assert bits.point == pytest.approx(e.point / math.log(2)) and bits.units == "bits"


def test_bounds_record_the_site_roles_on_every_path():
    lg = LinearGaussian(torch.eye(2), 0.5)
    e = mutual_information(lg.model, "x", num_samples=32, num_particles=16, seed=0)
    assert e.settings["nuisance"] == [] and e.settings["given"] == []
    assert e.point is None  # bounds carry no point estimate


def test_method_docstrings_state_their_formula():
    for fn in (pyromi.iwae_mi, pyromi.ais_mi, pyromi.ba_mi, pyromi.giwae_mi, pyromi.infonce_mi, pyromi.mine_mi,
               pyromi.mine_ais_mi, pyromi.mist_mi):
        doc = inspect.getdoc(fn)
        assert doc and len(doc.splitlines()) >= 3, fn.__name__
