"""Fuzz test: every public entry point against a table of bad inputs.

For each (entry point, bad input) pair, one test id. The call must EITHER

* raise a clear error: a :class:`pyromi.errors.PyromiError`, ``ValueError`` or ``TypeError`` raised
  by pyromi itself (not a raw torch/pyro/numpy exception passed through), whose message is one
  paragraph (no blank line, no tensor dump, no Pyro "Trace Shapes" table) and names the argument
  or site at fault; an exception raised by the user's own model may propagate unchanged;

* OR return a result whose numbers are all finite (bounds, standard errors, per-sample terms);

AND, either way, leave global state as it found it: Pyro's handler stack empty, torch's, numpy's and
Python's global RNG states unchanged, Pyro's parameter store unchanged, grad mode, the default dtype
and Pyro's validation flags unchanged. The CLI (``pyromi.cli.main``) must exit with an ``error: ...``
line instead of a traceback, or print finite numbers.

Sizes are tiny (N <= 32, K <= 4, T <= 2, 2 training steps): the point is the input handling.
"""

from __future__ import annotations

import contextlib
import io
import math
import random
import re
import traceback
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.infer.util
import pyro.poutine.util
import pytest
import torch
from pyro.poutine.runtime import _PYRO_STACK

from pyromi import AmortizedNormal, LearnedEstimate, LogMarginalEstimate, MIEstimate, log_marginal, mist, mutual_information
from pyromi.audit import AuditReport, audit
from pyromi.baselines import cca_mi, ksg_mi
from pyromi.cli import main as cli_main
from pyromi.errors import PyromiError

torch.set_num_threads(1)

DZ, DX = 2, 3
W = torch.tensor([[1.0, 0.5], [-0.3, 0.8], [0.2, -1.0]])


class UserModelError(Exception):
    """Raised by the fuzz models that raise: the user's own exception may propagate unchanged."""


# ------------------------------------------------------------------------------------------------
# models, written the way Pyro users write them


def gauss():
    z = pyro.sample("z", dist.Normal(torch.zeros(DZ), 1.0).to_event(1))
    return pyro.sample("x", dist.Normal(z @ W.T, 0.5).to_event(1))


def nan_region_likelihood():
    """log p(x|z) is NaN where z_0 > 1.5 (about 7% of the prior mass)."""
    z = pyro.sample("z", dist.Normal(torch.zeros(DZ), 1.0).to_event(1))
    loc = z @ W.T
    loc = torch.where(z[..., :1] > 1.5, torch.full_like(loc, float("nan")), loc)
    return pyro.sample("x", dist.Normal(loc, 0.5).to_event(1))


def nan_half_likelihood():
    """The classic slip: log of a latent that is negative half of the time -> NaN mean."""
    z = pyro.sample("z", dist.Normal(torch.zeros(DZ), 1.0).to_event(1))
    return pyro.sample("x", dist.Normal(torch.log(z) @ W.T, 0.5).to_event(1))


def zero_scale_region():
    """Likelihood scale 0 where z_0 > 1.5: log p(x|z) is +-inf / invalid there."""
    z = pyro.sample("z", dist.Normal(torch.zeros(DZ), 1.0).to_event(1))
    scale = torch.where(z[..., :1] > 1.5, torch.zeros(()), torch.full((), 0.5)).expand(z.shape[:-1] + (DX,))
    return pyro.sample("x", dist.Normal(z @ W.T, scale).to_event(1))


def uniform_likelihood():
    """x ~ Uniform(z - 1, z + 1): the support of p(x|z) depends on z (log p = -inf off it)."""
    z = pyro.sample("z", dist.Normal(torch.zeros(DZ), 1.0).to_event(1))
    return pyro.sample("x", dist.Uniform(z - 1.0, z + 1.0).to_event(1))


def uniform_likelihood_no_validation():
    """As above, built with Pyro's validation off (as users do for speed): log p(x|z) = -inf off the
    support instead of a ValueError, so the bounds meet -inf log weights (AIS chains included)."""
    z = pyro.sample("z", dist.Normal(torch.zeros(DZ), 1.0).to_event(1))
    with pyro.validation_enabled(False):
        d = dist.Uniform(z - 1.0, z + 1.0).to_event(1)
    return pyro.sample("x", d)


def nan_region_no_validation():
    """log p(x|z) is NaN where z_0 > 2 (2% of the prior mass), validation off: no ValueError at
    construction, the NaN reaches the log densities (the joint draws there are NaN too)."""
    z = pyro.sample("z", dist.Normal(torch.zeros(DZ), 1.0).to_event(1))
    loc = z @ W.T
    loc = torch.where(z[..., :1] > 2.0, torch.full_like(loc, float("nan")), loc)
    with pyro.validation_enabled(False):
        d = dist.Normal(loc, 0.5).to_event(1)
    return pyro.sample("x", d)


def mixture_prior():
    mix = dist.Categorical(torch.tensor([0.3, 0.7]))
    comp = dist.Normal(torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), 1.0).to_event(1)
    z = pyro.sample("z", dist.MixtureSameFamily(mix, comp))
    return pyro.sample("x", dist.Normal(z @ W.T, 0.5).to_event(1))


def conditioned_latent():
    """A latent site given a value with obs= (a conditioned latent)."""
    z = pyro.sample("z", dist.Normal(torch.zeros(DZ), 1.0).to_event(1), obs=torch.tensor([0.3, -0.2]))
    u = pyro.sample("u", dist.Normal(torch.zeros(DZ), 1.0).to_event(1))
    return pyro.sample("x", dist.Normal((z + u) @ W.T, 0.5).to_event(1))


def pyro_conditioned():
    return pyro.condition(gauss, data={"z": torch.tensor([0.3, -0.2])})()


def extra_batch_dims():
    """A latent with an undeclared batch dimension (shape (3, 2), no plate, only .to_event(1))."""
    z = pyro.sample("z", dist.Normal(torch.zeros(3, DZ), 1.0).to_event(1))
    return pyro.sample("x", dist.Normal(z @ W.T, 0.5).to_event(2))


def missing_to_event():
    z = pyro.sample("z", dist.Normal(torch.zeros(DZ), 1.0))
    return pyro.sample("x", dist.Normal(z @ W.T, 0.5))


def discrete_latent():
    z = pyro.sample("z", dist.Bernoulli(torch.full((DZ,), 0.5)).to_event(1))
    return pyro.sample("x", dist.Normal(z @ W.T, 0.5).to_event(1))


def no_latent():
    return pyro.sample("x", dist.Normal(torch.zeros(DX), 1.0).to_event(1))


def raising_model():
    pyro.sample("z", dist.Normal(torch.zeros(DZ), 1.0).to_event(1))
    raise UserModelError("boom: the user's model failed")


def raising_when_batched():
    """Works on one draw, raises under pyromi's batch plates (a model that is not vectorisable)."""
    z = pyro.sample("z", dist.Normal(torch.zeros(DZ), 1.0).to_event(1))
    if z.dim() > 1:
        raise UserModelError("boom: this model only handles one z at a time")
    return pyro.sample("x", dist.Normal(z @ W.T, 0.5).to_event(1))


def make_raising_later(after: int | None = None):
    """Raises on every call after the first ``after`` (never when ``after`` is None; ``model.calls``
    counts the calls). With ``after`` half the calls of a valid run, it fails in the middle of the
    estimation, inside pyromi's handlers, after the model passed pyromi's checks."""
    calls = [0]

    def model():
        calls[0] += 1
        z = pyro.sample("z", dist.Normal(torch.zeros(DZ), 1.0).to_event(1))
        if after is not None and calls[0] > after:
            raise UserModelError(f"boom: call {calls[0]}")
        return pyro.sample("x", dist.Normal(z @ W.T, 0.5).to_event(1))

    model.calls = calls
    return model


def _mid_run_model(call) -> callable:
    """A model that raises half-way through ``call(model)`` (a dry run counts the model's calls)."""
    counting = make_raising_later(None)
    before = _snapshot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call(counting)
        except Exception:  # noqa: BLE001 - only the count matters here
            pass
    _restore(before)
    return make_raising_later(max(counting.calls[0] // 2, 1))


def huge_likelihood():
    """sigma = 1e-30: log densities of order 1e60 (overflow in float32)."""
    z = pyro.sample("z", dist.Normal(torch.zeros(DZ), 1.0).to_event(1))
    return pyro.sample("x", dist.Normal(z @ W.T, 1e-30).to_event(1))


def float64_model():
    z = pyro.sample("z", dist.Normal(torch.zeros(DZ, dtype=torch.float64), 1.0).to_event(1))
    return pyro.sample("x", dist.Normal(z @ W.T.double(), 0.5).to_event(1))


# name -> (factory giving the model, keywords one of which a clear error must name, user error ok)
MODELS = {
    "model=nan_region_likelihood": (lambda: nan_region_likelihood, ["'x'", "nan"], False),
    "model=nan_half_likelihood": (lambda: nan_half_likelihood, ["'x'", "nan"], False),
    "model=zero_scale_region": (lambda: zero_scale_region, ["'x'", "scale", "inf", "nan"], False),
    "model=uniform_likelihood": (lambda: uniform_likelihood, ["'x'", "support", "inf"], False),
    "model=uniform_likelihood_no_validation": (lambda: uniform_likelihood_no_validation,
                                               ["'x'", "support", "inf"], False),
    "model=nan_region_no_validation": (lambda: nan_region_no_validation, ["'x'", "nan"], False),
    "model=mixture_prior": (lambda: mixture_prior, ["'z'", "mixture"], False),
    "model=conditioned_latent": (lambda: conditioned_latent, ["'z'"], False),
    "model=pyro_condition_latent": (lambda: pyro_conditioned, ["'z'"], False),
    "model=extra_batch_dims": (lambda: extra_batch_dims, ["'z'", "'x'", "batch", "plate"], False),
    "model=missing_to_event": (lambda: missing_to_event, ["'z'", "'x'", "to_event"], False),
    "model=discrete_latent": (lambda: discrete_latent, ["'z'", "discrete"], False),
    "model=no_latent": (lambda: no_latent, ["latent"], False),
    "model=raises": (lambda: raising_model, ["model", "boom"], True),
    "model=raises_when_batched": (lambda: raising_when_batched, ["model", "boom", "vectori"], True),
    "model=raises_mid_run": (None, ["model", "boom"], True),  # built per entry point: _mid_run_model
    "model=huge_likelihood": (lambda: huge_likelihood, ["'x'", "inf", "nan", "overflow"], False),
    "model=float64": (lambda: float64_model, ["dtype", "float"], False),
    "model=None": (lambda: None, ["model"], False),
    "model=str": (lambda: "gauss", ["model"], False),
}


def _user_guide(x):
    """A fixed amortised encoder q(z|x) (any function of x is a valid proposal)."""
    loc = x[..., :DZ] * 0.5
    pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))


# ------------------------------------------------------------------------------------------------
# the harness


def _snapshot() -> dict:
    return {
        "torch_rng": torch.get_rng_state().clone(),
        "numpy_rng": np.random.get_state(),
        "python_rng": random.getstate(),
        "params": {k: v.detach().clone() for k, v in pyro.get_param_store().items()},
        "grad_enabled": torch.is_grad_enabled(),
        "default_dtype": torch.get_default_dtype(),
        "validation": (pyro.infer.util.is_validation_enabled(), pyro.poutine.util.is_validation_enabled(),
                       torch.distributions.Distribution._validate_args),
    }


def _restore(state: dict) -> None:
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    _PYRO_STACK.clear()
    pyro.clear_param_store()


def _state_problems(before: dict, after: dict, stack: list) -> list[str]:
    out = []
    if stack:
        out.append(f"leaked Pyro handlers: _PYRO_STACK = {[type(h).__name__ for h in stack]}")
    if not torch.equal(before["torch_rng"], after["torch_rng"]):
        out.append("torch's global RNG state changed")
    b, a = before["numpy_rng"], after["numpy_rng"]
    if not (b[0] == a[0] and np.array_equal(b[1], a[1]) and b[2:] == a[2:]):
        out.append("numpy's global RNG state changed")
    if before["python_rng"] != after["python_rng"]:
        out.append("Python's random state changed")
    pb, pa = before["params"], after["params"]
    if set(pb) != set(pa):
        out.append(f"param store keys changed: {sorted(pb)} -> {sorted(pa)}")
    elif any(not torch.equal(pb[k], pa[k]) for k in pb):
        out.append("param store values changed")
    for key in ("grad_enabled", "default_dtype", "validation"):
        if before[key] != after[key]:
            out.append(f"{key} changed: {before[key]} -> {after[key]}")
    return out


def _short(e: BaseException) -> str:
    msg = str(e).strip().replace("\n", " | ")
    return f"{type(e).__name__}: {msg[:300]}"


# Python's own call-signature errors (e.g. an unknown keyword forwarded by ``**kwargs``) are clear
_PY_SIGNATURE_ERROR = re.compile(r"got an unexpected keyword argument|missing \d+ required|takes \d+ positional")


def _error_problems(e: BaseException, keywords: list[str], user_error_ok: bool) -> list[str]:
    if user_error_ok and isinstance(e, UserModelError):
        return []
    if not isinstance(e, (PyromiError, ValueError, TypeError)):
        return [f"raw exception {_short(e)}"]
    out = []
    msg = str(e).strip()
    if not isinstance(e, PyromiError) and not _PY_SIGNATURE_ERROR.search(msg):
        # a ValueError/TypeError must come from a ``raise`` statement in pyromi's own source, not
        # from torch/numpy/pyro (Python frames elsewhere, or a C function called from pyromi)
        tb = traceback.extract_tb(e.__traceback__)
        last = tb[-1] if tb else None
        fname = "?" if last is None else last.filename.replace("\\", "/")
        where = "?" if last is None else f"{fname.split('site-packages/')[-1]}:{last.lineno}"
        if last is None or "/pyromi/" not in fname:
            out.append(f"{type(e).__name__} raised inside {where}, not by pyromi")
        elif not (last.line or "").lstrip().startswith("raise"):
            out.append(f"{type(e).__name__} raised by a library call at {where} ({(last.line or '').strip()[:60]}), "
                       "not by a pyromi check")
    if not msg:
        out.append("empty error message")
    if "tensor(" in msg:
        out.append("error message embeds a raw tensor dump")
    if "Trace Shapes" in msg or "Traceback" in msg:
        out.append("error message embeds a Pyro trace table / traceback")
    if "\n\n" in msg:
        out.append("error message is not one paragraph (blank line)")
    if keywords and not any(k.lower() in msg.lower() for k in keywords):
        out.append(f"error message names none of {keywords}")
    if out:
        out.append(_short(e))
    return out


def _nonfinite(result) -> list[str]:
    """Descriptions of the non-finite numbers in a result (empty when all are finite)."""
    bad = []

    def num(name, v, required=False):
        if v is None:
            if required:
                bad.append(f"{name} is None")
            return
        if isinstance(v, torch.Tensor):
            if v.numel() == 0:
                bad.append(f"{name} is empty")
            elif not bool(torch.isfinite(v).all()):
                bad.append(f"{name} has {int((~torch.isfinite(v)).sum())} non-finite entries "
                           f"(e.g. {v[~torch.isfinite(v)].flatten()[0].item()})")
            return
        if not math.isfinite(float(v)):
            bad.append(f"{name} = {v}")

    if isinstance(result, (MIEstimate, LearnedEstimate)):
        if result.lower is None and result.upper is None:
            bad.append("neither lower nor upper")
        num("lower", result.lower)
        num("upper", result.upper)
        num("lower_se", result.lower_se)
        num("upper_se", result.upper_se)
        num("point", result.point)
        for k, v in result.terms.items():
            num(f"terms[{k!r}]", v)
    elif isinstance(result, LogMarginalEstimate):
        num("lower", result.lower, required=True)
        num("upper", result.upper)
    elif isinstance(result, AuditReport):
        bad += [f"mi.{b}" for b in _nonfinite(result.mi)]
        for name in ("rate", "rate_se", "distortion", "distortion_se"):
            num(name, getattr(result, name))
        for s in result.sites:
            num(f"site {s.name} rate", s.rate)
            num(f"site {s.name} rate_se", s.rate_se)
    elif isinstance(result, (float, int, np.floating)):
        num("value", result)
    else:
        bad.append(f"unexpected result type {type(result).__name__}")
    return bad


@pytest.fixture(autouse=True)
def _isolate():
    """Each case starts from a clean, known global state, and a leak cannot spill into the next."""
    pyro.clear_param_store()
    yield
    _PYRO_STACK.clear()
    pyro.clear_param_store()
    pyro.enable_validation(True)
    torch.set_grad_enabled(True)


def _prepare() -> dict:
    pyro.clear_param_store()
    pyro.param("fuzz_sentinel", torch.tensor([1.0, 2.0]))
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    return _snapshot()


def check_call(fn, keywords: list[str], user_error_ok: bool = False) -> None:
    before = _prepare()
    result, error = None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - classified below
            error = e
    stack = list(_PYRO_STACK)
    after = _snapshot()
    problems = (_error_problems(error, keywords, user_error_ok) if error is not None
                else [f"non-finite result: {b}" for b in _nonfinite(result)])
    problems += _state_problems(before, after, stack)
    assert not problems, "; ".join(problems)


# ------------------------------------------------------------------------------------------------
# mutual_information: every bound


BASE = {
    "iwae": dict(num_samples=16, num_particles=4),
    "ais": dict(num_samples=8, num_particles=2, num_steps=2, num_leapfrog=1),
    "ba": dict(num_samples=16, train_steps=2, batch_size=8),
    "giwae": dict(num_samples=16, num_particles=4, train_steps=2, batch_size=8),
    "infonce": dict(num_samples=16, num_particles=4, train_steps=2, batch_size=8),
    "mine_dv": dict(num_samples=16, num_particles=4, train_steps=2, batch_size=8),
    "mine_f": dict(num_samples=16, num_particles=4, train_steps=2, batch_size=8),
    "mine_ais": dict(num_samples=8, num_particles=2, num_steps=2, num_leapfrog=1, train_steps=2, batch_size=8),
    "mist": dict(num_samples=32),
}

class Lazy:
    """An override value built when the test runs (not at collection)."""

    def __init__(self, build):
        self.build = build


def _joint(n=16, nan_at=None, inf_at=None):
    from pyromi import ModelAdapter

    with torch.random.fork_rng():
        torch.manual_seed(5)
        j = ModelAdapter(gauss, "x").sample_joint(n)
    x = j.observed["x"].clone()
    if nan_at is not None:
        x[nan_at] = float("nan")
    if inf_at is not None:
        x[inf_at] = float("inf")
    return j._replace(observed={"x": x})


def _empty_joint():
    j = _joint(4)
    return j._replace(observed={"x": j.observed["x"][:0]}, latent={"z": j.latent["z"][:0]},
                      log_prior=j.log_prior[:0], log_likelihood=j.log_likelihood[:0])


# case id -> (overrides, keywords a clear error must name one of)
MI_ARGS = {
    "valid": ({}, []),
    "observed=123": (dict(observed=123), ["observed"]),
    "observed=None": (dict(observed=None), ["observed"]),
    "observed=unknown_site": (dict(observed="nope"), ["nope"]),
    "observed=[x,x]": (dict(observed=["x", "x"]), ["'x'", "observed"]),
    "latent=unknown_site": (dict(latent="nope"), ["nope"]),
    "latent=123": (dict(latent=123), ["latent"]),
    "latent=x(observed)": (dict(latent="x"), ["'x'"]),
    "seed=2**70": (dict(seed=2**70), ["seed"]),
    "seed=-1": (dict(seed=-1), ["seed"]),
    "seed=str": (dict(seed="a"), ["seed"]),
    "seed=1.5": (dict(seed=1.5), ["seed"]),
    "max_batch=1.5": (dict(max_batch=1.5), ["max_batch"]),
    "max_batch=0": (dict(max_batch=0), ["max_batch"]),
    "max_batch=str": (dict(max_batch="8"), ["max_batch"]),
    "num_samples=0": (dict(num_samples=0), ["num_samples"]),
    "num_samples=2.5": (dict(num_samples=2.5), ["num_samples"]),
    "num_particles=-1": (dict(num_particles=-1), ["num_particles"]),
    "num_particles=0": (dict(num_particles=0), ["num_particles"]),
    "num_particles=1.5": (dict(num_particles=1.5), ["num_particles"]),
    "device=gpu0": (dict(device="gpu0"), ["device", "gpu0"]),
    "device=cuda:7": (dict(device="cuda:7"), ["device", "cuda"]),
    "dtype=str": (dict(dtype="float32"), ["dtype"]),
    "dtype=int64": (dict(dtype=torch.int64), ["dtype"]),
    "level=1.5": (dict(level=1.5), ["level"]),
    "level=nan": (dict(level=float("nan")), ["level"]),
    "model_args=int": (dict(model_args=5), ["model_args"]),
    "model_kwargs=list": (dict(model_kwargs=[1]), ["model_kwargs"]),
    "num_steps=0": (dict(num_steps=0), ["num_steps"]),
    "num_steps=1.5": (dict(num_steps=1.5), ["num_steps"]),
    "num_leapfrog=0": (dict(num_leapfrog=0), ["num_leapfrog"]),
    "schedule=bogus": (dict(schedule="bogus"), ["schedule"]),
    "schedule=wrong_length": (dict(schedule=[0.0, 0.3, 0.6, 1.0, 1.0]), ["schedule", "beta"]),
    "schedule=decreasing": (dict(schedule=[0.0, 0.7, 0.3]), ["schedule", "beta"]),
    "target_accept=1.5": (dict(target_accept=1.5), ["target_accept"]),
    "train_steps=-1": (dict(train_steps=-1), ["train_steps"]),
    "batch_size=0": (dict(batch_size=0), ["batch_size"]),
    "guide=str": (dict(guide="prior"), ["guide"]),
    "guide=123": (dict(guide=123), ["guide"]),
    "joint=str": (dict(joint="x"), ["joint"]),
    "joint=valid": (dict(joint=Lazy(_joint)), ["joint"]),
    "joint=nan_x": (dict(joint=Lazy(lambda: _joint(nan_at=(3, 1)))), ["joint", "nan"]),
    "joint=inf_x": (dict(joint=Lazy(lambda: _joint(inf_at=(5, 0)))), ["joint", "inf"]),
    "joint=empty": (dict(joint=Lazy(_empty_joint)), ["joint"]),
    "critic=str": (dict(critic="mlp"), ["critic"]),
}


def _mi_cases():
    for bound in BASE:
        for cid, (over, kws) in MI_ARGS.items():
            yield pytest.param(bound, cid, over, kws, False, id=f"mutual_information[{bound}]-{cid}")
        for cid, (factory, kws, user_ok) in MODELS.items():
            yield pytest.param(bound, cid, {"model": factory}, kws, user_ok,
                               id=f"mutual_information[{bound}]-{cid}")


def _models(over: dict, cid: str, call) -> dict:
    """Overrides with the model factory of a ``model=...`` case replaced by the model."""
    over = {k: v.build() if isinstance(v, Lazy) else v for k, v in over.items()}
    if cid == "model=raises_mid_run":
        over["model"] = _mid_run_model(call)
    elif cid.startswith("model="):
        over["model"] = over["model"]()
    return over


@pytest.mark.parametrize("bound, cid, over, keywords, user_error_ok", list(_mi_cases()))
def test_mutual_information(bound, cid, over, keywords, user_error_ok):
    kw = dict(model=gauss, observed="x", bound=bound, seed=0, progress=False, **BASE[bound])
    kw.update(_models(over, cid, lambda m: mutual_information(**{**kw, "model": m})))
    check_call(lambda: mutual_information(**kw), keywords, user_error_ok)


# ------------------------------------------------------------------------------------------------
# log_marginal


def _data(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, DZ, generator=g)
    return z @ W.T + 0.5 * torch.randn(n, DX, generator=g), z


X, ZSTAR = _data()
_nan_x = X.clone()
_nan_x[3, 1] = float("nan")
_inf_x = X.clone()
_inf_x[5, 0] = float("inf")

LM_ARGS = {
    "valid": ({}, []),
    "valid_with_latent_values": (dict(latent_values=ZSTAR), []),
    "data=empty(0,3)": (dict(data=torch.empty(0, DX)), ["data", "empty", "0"]),
    "data=nan": (dict(data=_nan_x), ["data", "nan"]),
    "data=inf": (dict(data=_inf_x), ["data", "inf"]),
    "data=all_nan": (dict(data=torch.full((4, DX), float("nan"))), ["data", "nan"]),
    "data=wrong_shape": (dict(data=torch.zeros(4, DX + 1)), ["data", "shape"]),
    "data=str": (dict(data="x.csv"), ["data"]),
    "data=None": (dict(data=None), ["data"]),
    "data=dict_missing_site": (dict(data={"y": X}), ["data", "'x'"]),
    "data=int_tensor": (dict(data=torch.ones(4, DX, dtype=torch.int64)), ["data", "dtype"]),
    "data=float64": (dict(data=X.double()), ["data", "dtype"]),
    "latent_values=wrong_n": (dict(latent_values=ZSTAR[:5]), ["latent_values"]),
    "latent_values=nan": (dict(latent_values=torch.full_like(ZSTAR, float("nan"))), ["latent_values", "nan"]),
    "latent_values=wrong_shape": (dict(latent_values=torch.zeros(16, 5)), ["latent_values", "shape"]),
    "start=str": (dict(start="prior"), ["start", "guide"]),
    "start=class": (dict(start=AmortizedNormal), ["start"]),
    "start=123": (dict(start=123), ["start", "guide"]),
    "observed=123": (dict(observed=123), ["observed"]),
    "observed=unknown_site": (dict(observed="nope"), ["nope"]),
    "latent=unknown_site": (dict(latent="nope"), ["nope"]),
    "seed=2**70": (dict(seed=2**70), ["seed"]),
    "seed=-1": (dict(seed=-1), ["seed"]),
    "seed=str": (dict(seed="a"), ["seed"]),
    "num_particles=0": (dict(num_particles=0), ["num_particles"]),
    "num_particles=-1": (dict(num_particles=-1), ["num_particles"]),
    "num_particles=1.5": (dict(num_particles=1.5), ["num_particles"]),
    "num_steps=0": (dict(num_steps=0), ["num_steps"]),
    "num_leapfrog=0": (dict(num_leapfrog=0), ["num_leapfrog"]),
    "num_leapfrog=1.5": (dict(num_leapfrog=1.5), ["num_leapfrog"]),
    "schedule=bogus": (dict(schedule="bogus"), ["schedule"]),
    "target_accept=2": (dict(target_accept=2.0), ["target_accept"]),
    "device=gpu0": (dict(device="gpu0"), ["device", "gpu0"]),
    "dtype=str": (dict(dtype="float32"), ["dtype"]),
    "model_kwargs=list": (dict(model_kwargs=[1]), ["model_kwargs"]),
}


def _lm_cases():
    for cid, (over, kws) in LM_ARGS.items():
        yield pytest.param(cid, over, kws, False, id=f"log_marginal-{cid}")
    for cid, (factory, kws, user_ok) in MODELS.items():
        yield pytest.param(cid, {"model": factory}, kws, user_ok, id=f"log_marginal-{cid}")


@pytest.mark.parametrize("cid, over, keywords, user_error_ok", list(_lm_cases()))
def test_log_marginal(cid, over, keywords, user_error_ok):
    kw = dict(model=gauss, observed="x", data=X, num_particles=2, num_steps=2, num_leapfrog=1,
              seed=0, progress=False)
    kw.update(_models(over, cid, lambda m: log_marginal(**{**kw, "model": m})))
    check_call(lambda: log_marginal(**kw), keywords, user_error_ok)


# ------------------------------------------------------------------------------------------------
# pyromi.audit.audit


AUDIT_ARGS = {
    "valid_prior": (dict(guide=None, data=None), []),
    "valid_with_guide": ({}, []),
    "data=empty(0,3)": (dict(data=torch.empty(0, DX)), ["data", "empty", "0"]),
    "data=nan": (dict(data=_nan_x), ["data", "nan"]),
    "data=inf": (dict(data=_inf_x), ["data", "inf"]),
    "data=wrong_shape": (dict(data=torch.zeros(4, DX + 1)), ["data", "shape"]),
    "data=str": (dict(data="x.csv"), ["data"]),
    "guide=str": (dict(guide="x"), ["guide"]),
    "guide=class": (dict(guide=AmortizedNormal), ["guide"]),
    "guide=123": (dict(guide=123), ["guide"]),
    "start=prior_str": (dict(start="prior"), ["start"]),
    "num_samples=0": (dict(num_samples=0), ["num_samples"]),
    "num_particles=-1": (dict(num_particles=-1), ["num_particles"]),
    "num_steps=0": (dict(num_steps=0), ["num_steps"]),
    "encoder_particles=0": (dict(encoder_particles=0), ["encoder_particles"]),
    "encoder_particles=1.5": (dict(encoder_particles=1.5), ["encoder_particles"]),
    "collapse_threshold=-1": (dict(collapse_threshold=-1.0), ["collapse_threshold"]),
    "collapse_threshold=str": (dict(collapse_threshold="a"), ["collapse_threshold"]),
    "collapse_threshold=nan": (dict(collapse_threshold=float("nan")), ["collapse_threshold"]),
    "max_width=0": (dict(max_width=0.0), ["max_width"]),
    "max_width=nan": (dict(max_width=float("nan")), ["max_width"]),
    "seed=2**70": (dict(seed=2**70), ["seed"]),
    "seed=-1": (dict(seed=-1), ["seed"]),
    "seed=str": (dict(seed="a"), ["seed"]),
    "observed=123": (dict(observed=123), ["observed"]),
    "observed=unknown_site": (dict(observed="nope"), ["nope"]),
    "unknown_kwarg": (dict(bogus_kw=1), ["bogus_kw"]),
    "max_batch=0": (dict(max_batch=0), ["max_batch"]),
}


def _audit_cases():
    for cid, (over, kws) in AUDIT_ARGS.items():
        yield pytest.param(cid, over, kws, False, id=f"audit-{cid}")
    for cid, (factory, kws, user_ok) in MODELS.items():
        yield pytest.param(cid, {"model": factory, "guide": None, "data": None}, kws, user_ok,
                           id=f"audit-{cid}")


@pytest.mark.parametrize("cid, over, keywords, user_error_ok", list(_audit_cases()))
def test_audit(cid, over, keywords, user_error_ok):
    kw = dict(model=gauss, observed="x", guide=_user_guide, data=X, num_samples=8, num_particles=2,
              num_steps=2, encoder_particles=2, num_leapfrog=1, seed=0, progress=False)
    kw.update(over)
    kw.update(_models(over, cid, lambda m: audit(**{**kw, "model": m})))
    check_call(lambda: audit(**kw), keywords, user_error_ok)


# ------------------------------------------------------------------------------------------------
# sample-only estimators: pyromi.mist.estimate, KSG, CCA


def _xy(n=64, dx=2, dy=1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dx))
    y = x[:, :1] * 0.8 + 0.6 * rng.standard_normal((n, dy))
    return x, y


XY = _xy()
_xn = XY[0].copy()
_xn[7, 1] = np.nan
_xi = XY[0].copy()
_xi[2, 0] = np.inf
_xc = XY[0].copy()
_xc[:, 1] = 3.0

DATA_CASES = {
    "valid": (dict(), []),
    "x=empty(0,3)": (dict(x=np.empty((0, 3)), y=np.empty((0, 1))), ["x", "rows", "empty"]),
    "y=empty_columns": (dict(y=np.empty((64, 0))), ["y", "column"]),
    "x=nan": (dict(x=_xn), ["nan", "x"]),
    "x=inf": (dict(x=_xi), ["inf", "x"]),
    "x=torch_nan": (dict(x=torch.as_tensor(_xn)), ["nan", "x"]),
    "n_mismatch": (dict(y=XY[1][:50]), ["rows", "same number"]),
    "x=1d": (dict(x=XY[0][:, 0]), ["x", "2-D", "shape"]),
    "x=3d": (dict(x=XY[0].reshape(64, 2, 1)), ["x", "2-D", "shape"]),
    "x=str_array": (dict(x=np.array([["a", "b"]] * 64)), ["x", "dtype", "numeric"]),
    "x=object_array": (dict(x=np.array([[1.0, None]] * 64, dtype=object)), ["x", "dtype", "numeric"]),
    "x=complex": (dict(x=XY[0] + 1j), ["x", "dtype", "real"]),
    "x=None": (dict(x=None), ["x"]),
    "x=constant_column": (dict(x=_xc), ["constant", "column"]),
    "n=5": (dict(x=XY[0][:5], y=XY[1][:5]), ["n=", "rows", "n >="]),
    "x=huge_values": (dict(x=XY[0] * 1e300), ["x", "finite", "overflow", "scale"]),
    "x=tiny_spread": (dict(x=XY[0] * 1e-300), ["x", "constant", "scale"]),
    "x=duplicate_rows": (dict(x=np.repeat(XY[0][:8], 8, axis=0)), ["x", "duplicate", "ties"]),
}

MIST_ARGS = {
    **DATA_CASES,
    "x=40_columns": (dict(x=np.random.default_rng(1).standard_normal((64, 40))), ["40", "columns", "32"]),
    "level=1.5": (dict(level=1.5), ["level"]),
    "level=0": (dict(level=0.0), ["level"]),
    "level=nan": (dict(level=float("nan")), ["level"]),
    "level=str": (dict(level="a"), ["level"]),
    "seed=2**70(blocks)": (dict(x=_xy(2500)[0], y=_xy(2500)[1], seed=2**70), ["seed"]),
    "seed=-1(blocks)": (dict(x=_xy(2500)[0], y=_xy(2500)[1], seed=-1), ["seed"]),
    "seed=str(blocks)": (dict(x=_xy(2500)[0], y=_xy(2500)[1], seed="a"), ["seed"]),
    "seed=str": (dict(seed="a"), ["seed"]),
    "model=unknown_weights": (dict(model="mist-nope"), ["mist-nope", "weights", "model"]),
    "calibration=bogus": (dict(calibration="bogus"), ["calibration", "bogus"]),
}

KSG_ARGS = {
    **DATA_CASES,
    "k=0": (dict(k=0), ["k"]),
    "k=-1": (dict(k=-1), ["k"]),
    "k=1.5": (dict(k=1.5), ["k"]),
    "k=str": (dict(k="a"), ["k"]),
    "k=100(>n)": (dict(k=100), ["k", "n"]),
    "seed=-1": (dict(seed=-1), ["seed"]),
    "seed=2**70": (dict(seed=2**70), ["seed"]),
    "seed=str": (dict(seed="a"), ["seed"]),
    "jitter=nan": (dict(jitter=float("nan")), ["jitter"]),
}

CCA_ARGS = {
    **DATA_CASES,
    "shrinkage=1.5": (dict(shrinkage=1.5), ["shrinkage"]),
    "shrinkage=-0.1": (dict(shrinkage=-0.1), ["shrinkage"]),
    "shrinkage=nan": (dict(shrinkage=float("nan")), ["shrinkage"]),
    "shrinkage=str": (dict(shrinkage="a"), ["shrinkage"]),
    "n<=dx+dy": (dict(x=XY[0][:3], y=XY[1][:3]), ["n", "rows", "shrinkage"]),
}


def _sample_only_cases():
    for name, table in (("mist.estimate", MIST_ARGS), ("ksg_mi", KSG_ARGS), ("cca_mi", CCA_ARGS)):
        for cid, (over, kws) in table.items():
            yield pytest.param(name, over, kws, id=f"{name}-{cid}")


@pytest.mark.parametrize("name, over, keywords", list(_sample_only_cases()))
def test_sample_only(name, over, keywords):
    kw = dict(x=XY[0], y=XY[1])
    if name != "cca_mi":
        kw["seed"] = 0
    kw.update(over)
    fn = {"mist.estimate": mist.estimate, "ksg_mi": ksg_mi, "cca_mi": cca_mi}[name]
    check_call(lambda: fn(**kw), keywords)


# ------------------------------------------------------------------------------------------------
# the CLI


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    x, y = _xy(64)
    rows = "\n".join(f"{a:.6f},{b:.6f},{c:.6f}" for a, b, c in zip(x[:, 0], x[:, 1], y[:, 0]))
    (d / "ok.csv").write_text("a,b,c\n" + rows + "\n")
    (d / "header_only.csv").write_text("a,b,c\n")
    (d / "empty.csv").write_text("")
    (d / "nan.csv").write_text("a,b,c\n" + rows + "\nnan,1.0,2.0\n")
    (d / "inf.csv").write_text("a,b,c\n" + rows + "\ninf,1.0,2.0\n")
    (d / "text.csv").write_text("a,b,c\n" + rows + "\n1.0,hello,2.0\n")
    (d / "ragged.csv").write_text("a,b,c\n1,2,3\n4,5\n6,7,8\n")
    (d / "const.csv").write_text("a,b,c\n" + "\n".join(f"{a:.6f},1.0,{c:.6f}" for a, c in zip(x[:, 0], y[:, 0])) + "\n")
    (d / "three_rows.csv").write_text("a,b,c\n1,2,3\n4,5,7\n6,9,8\n")
    (d / "data.txt").write_text("a,b,c\n1,2,3\n")
    np.save(d / "one_d.npy", x[:, 0])
    np.save(d / "three_d.npy", x.reshape(64, 2, 1))
    np.save(d / "ok.npy", np.concatenate([x, y], 1))
    np.save(d / "object.npy", np.array([[1, None, 2]] * 20, dtype=object), allow_pickle=True)
    np.savez(d / "ok.npz", x=x, y=y)
    (d / "garbage.npy").write_bytes(b"this is not a numpy file")
    return d


CLI_CASES = {
    "valid_mist": (["estimate", "{d}/ok.csv", "--x", "a,b", "--y", "c"], []),
    "valid_ksg_bits": (["estimate", "{d}/ok.csv", "--x", "a", "--y", "c", "--method", "ksg", "--bits"], []),
    "valid_cca_npy": (["estimate", "{d}/ok.npy", "--x", "0,1", "--y", "2", "--method", "cca"], []),
    "valid_npz": (["estimate", "{d}/ok.npz", "--x", "x", "--y", "y", "--method", "ksg"], []),
    "no_command": ([], ["command", "usage", "required"]),
    "estimate_no_args": (["estimate"], ["file", "--x"]),
    "missing_file": (["estimate", "{d}/nope.csv", "--x", "a", "--y", "c"], ["nope.csv"]),
    "directory_as_file": (["estimate", "{d}", "--x", "a", "--y", "c"], ["directory", "file", "cli"]),
    "header_only_csv": (["estimate", "{d}/header_only.csv", "--x", "a", "--y", "c"], ["rows", "empty", "header_only"]),
    "empty_csv": (["estimate", "{d}/empty.csv", "--x", "a", "--y", "c"], ["empty", "empty.csv"]),
    "nan_csv": (["estimate", "{d}/nan.csv", "--x", "a,b", "--y", "c"], ["nan", "row"]),
    "inf_csv": (["estimate", "{d}/inf.csv", "--x", "a,b", "--y", "c", "--method", "ksg"], ["inf", "row"]),
    "text_cell_csv": (["estimate", "{d}/text.csv", "--x", "a,b", "--y", "c"], ["hello", "number", "numeric"]),
    "ragged_csv": (["estimate", "{d}/ragged.csv", "--x", "a,b", "--y", "c"], ["row", "line", "column"]),
    "constant_column": (["estimate", "{d}/const.csv", "--x", "a,b", "--y", "c"], ["constant"]),
    "three_rows": (["estimate", "{d}/three_rows.csv", "--x", "a,b", "--y", "c"], ["rows", "n="]),
    "three_rows_cca": (["estimate", "{d}/three_rows.csv", "--x", "a,b", "--y", "c", "--method", "cca"], ["rows", "n="]),
    "unknown_column": (["estimate", "{d}/ok.csv", "--x", "q", "--y", "c"], ["'q'", "q"]),
    "column_index_out_of_range": (["estimate", "{d}/ok.npy", "--x", "7", "--y", "2"], ["7", "column"]),
    "same_column_x_y": (["estimate", "{d}/ok.csv", "--x", "a", "--y", "a"], ["both"]),
    "empty_column_spec": (["estimate", "{d}/ok.csv", "--x", "", "--y", "c"], ["--x", "column"]),
    "method=bogus": (["estimate", "{d}/ok.csv", "--x", "a", "--y", "c", "--method", "bogus"], ["method", "bogus"]),
    "level=1.5": (["estimate", "{d}/ok.csv", "--x", "a", "--y", "c", "--level", "1.5"], ["level", "1.5"]),
    "level=str": (["estimate", "{d}/ok.csv", "--x", "a", "--y", "c", "--level", "abc"], ["level", "abc"]),
    "k=0": (["estimate", "{d}/ok.csv", "--x", "a", "--y", "c", "--method", "ksg", "--k", "0"], ["--k", "k"]),
    "k=1000": (["estimate", "{d}/ok.csv", "--x", "a", "--y", "c", "--method", "ksg", "--k", "1000"], ["k", "rows", "n"]),
    "seed=-1_ksg": (["estimate", "{d}/ok.csv", "--x", "a", "--y", "c", "--method", "ksg", "--seed", "-1"], ["seed"]),
    "seed=2**70_ksg": (["estimate", "{d}/ok.csv", "--x", "a", "--y", "c", "--method", "ksg", "--seed", str(2**70)], ["seed"]),
    "seed=2**70_mist": (["estimate", "{d}/ok.csv", "--x", "a", "--y", "c", "--seed", str(2**70)], ["seed"]),
    "txt_extension": (["estimate", "{d}/data.txt", "--x", "a", "--y", "c"], [".txt", "csv"]),
    "npy_1d": (["estimate", "{d}/one_d.npy", "--x", "0", "--y", "1"], ["2-D", "shape", "dimension", "1-D", "column"]),
    "npy_3d": (["estimate", "{d}/three_d.npy", "--x", "0", "--y", "1"], ["2-D", "shape", "dimension", "3-D"]),
    "npy_object": (["estimate", "{d}/object.npy", "--x", "0", "--y", "2"], ["object", "pickle", "dtype", "numeric"]),
    "npy_garbage": (["estimate", "{d}/garbage.npy", "--x", "0", "--y", "1"], ["garbage.npy", "npy", "read"]),
    "npz_unknown_array": (["estimate", "{d}/ok.npz", "--x", "x", "--y", "y", "--array", "nope"], ["nope"]),
    "npz_unknown_name": (["estimate", "{d}/ok.npz", "--x", "q", "--y", "y"], ["'q'", "q"]),
    "demo_num_samples=0": (["demo", "-N", "0", "-K", "4", "--train-steps", "1", "-T", "1"], ["num-samples", "-N"]),
    "demo_K=-1": (["demo", "-N", "8", "-K", "-1", "--train-steps", "1", "-T", "1"], ["num-particles", "-K"]),
    "demo_T=0": (["demo", "-N", "8", "-K", "4", "--train-steps", "1", "-T", "0"], ["num-steps", "-T"]),
    "demo_train_steps=-1": (["demo", "-N", "8", "-K", "4", "--train-steps", "-1", "-T", "1"], ["train-steps"]),
    "demo_device=gpu0": (["demo", "-N", "8", "-K", "4", "--train-steps", "1", "-T", "1", "--device", "gpu0"], ["device", "gpu0"]),
    "demo_seed=-1": (["demo", "-N", "8", "-K", "4", "--train-steps", "1", "-T", "1", "--seed", "-1"], ["seed"]),
}

_NONFINITE_TOKEN = re.compile(r"(?<![A-Za-z])(nan|[+-]?inf(inity)?)(?![A-Za-z])", re.IGNORECASE)


@pytest.mark.parametrize("cid", list(CLI_CASES), ids=[f"cli-{c}" for c in CLI_CASES])
def test_cli(cid, files):
    argv_t, keywords = CLI_CASES[cid]
    argv = [a.replace("{d}", str(files)) for a in argv_t]
    before = _prepare()
    out, err = io.StringIO(), io.StringIO()
    problems = []
    with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.simplefilter("ignore")
        try:
            rc = cli_main(argv)
            exc = None
        except SystemExit as e:
            rc, exc = e.code, e
        except Exception as e:  # noqa: BLE001 - a traceback for the user
            rc, exc = None, e
            problems.append(f"raw traceback: {_short(e)}")
    stack = list(_PYRO_STACK)
    after = _snapshot()
    stdout, stderr = out.getvalue(), err.getvalue()
    if not problems:
        if rc in (0, None):  # returned normally, or SystemExit(0 / None)
            if not stdout.strip():
                problems.append("exit 0 but nothing printed")
            elif _NONFINITE_TOKEN.search(stdout):
                problems.append(f"non-finite number printed: {stdout.strip()[:200]!r}")
        else:
            # SystemExit(str) prints the string; SystemExit(int) relies on what was printed
            msg = rc if isinstance(rc, str) else (str(exc) if str(exc) not in ("", str(rc)) else "")
            text = (msg + "\n" + stderr).strip()
            error_lines = [ln for ln in text.splitlines() if "error:" in ln]
            if "Traceback" in text:
                problems.append(f"traceback printed: {text[-300:]!r}")
            elif not error_lines:
                problems.append(f"exit status {rc!r} without an 'error: ...' line: {text[:300]!r}")
            elif keywords and not any(k.lower() in text.lower() for k in keywords):
                problems.append(f"error names none of {keywords}: {error_lines[0][:300]!r}")
    problems += _state_problems(before, after, stack)
    assert not problems, "; ".join(problems)


def test_cli_subprocess(files):
    """The real entry point (``python -m pyromi``): a bad input gives an ``error:`` line and a non-zero
    exit status, no traceback."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "pyromi", "estimate", str(files / "nan.csv"), "--x", "a,b",
                           "--y", "c"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr[-500:]
    assert any(line.startswith("error:") or ": error:" in line for line in proc.stderr.splitlines()), proc.stderr
