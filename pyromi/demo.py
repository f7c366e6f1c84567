"""The demo job: MI bounds on the linear-Gaussian toy (true I = 14.275 nats) beside the truth."""

from __future__ import annotations

import math
import time
import warnings

import pyro
import torch

from ._rng import seeded
from .adapter import ModelAdapter, available_device
from .api import mutual_information
from .errors import DeviceError, PyromiError
from .ops import standard_error
from .models import LinearGaussian
from .proposals import AmortizedNormal, fit_proposal
from .result import _UNIT_SCALE


def run_demo(
    num_samples: int = 256,
    num_particles: int = 1000,
    train_steps: int = 1500,
    seed: int = 0,
    ais_steps: int = 300,
    device: str = "cpu",
    print_fn=print,
    units: str = "nats",
) -> dict:
    """Run every available bound on the toy model and print them next to the closed-form truth,
    each bound with its Monte Carlo standard error over the ``num_samples`` joint draws.

    ``units``: ``"nats"`` (default) or ``"bits"``, for what is printed and returned.

    Returns a dict of the numbers printed (in ``units``): ``truth``, ``oracle`` (the same-batch
    ``mean log p(x|z*) - log p(x)``) and one :class:`MIEstimate` per method. Raises
    :class:`~pyromi.errors.PyromiError` naming the argument for counts out of range, a device
    this machine does not have, or other units.
    """
    for name, value, lo in (("num_samples", num_samples, 2), ("num_particles", num_particles, 1),
                            ("train_steps", train_steps, 0), ("ais_steps", ais_steps, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or value > 2**63 - 3:
            why = " (standard errors need two draws)" if name == "num_samples" else ""
            raise PyromiError(f"{name} must be an int >= {lo}{why}, got {value!r}")
    if units not in _UNIT_SCALE:
        raise PyromiError(f"units must be 'nats' or 'bits', got {units!r}")
    scale = _UNIT_SCALE[units]
    dev = _check_device(device)
    lg = LinearGaussian.toy(device=dev)
    truth = lg.mutual_information()
    print_fn("pyromi demo: linear-Gaussian model z ~ N(0, I_5), x = W z + 0.1 eps, x in R^20")
    print_fn(f"closed-form I(x; z) = 1/2 log det(I + W^T W / sigma^2) = {scale * truth:.3f} {units}\n")

    t0 = time.perf_counter()
    q = AmortizedNormal(lg.model, observed="x", seed=seed)
    fit_proposal(q, train_steps, optim=pyro.optim.Adam({"lr": 3e-3}), batch_size=256, seed=seed)
    t_fit = time.perf_counter() - t0

    # one batch of N joint pairs (x_i, z_i*) shared by every method, and its per-sample oracle
    with seeded(seed + 1):
        joint = ModelAdapter(lg.model, "x").sample_joint(num_samples)
    oracle_terms = lg.oracle(joint.observed["x"], joint.latent["z"])
    oracle = float(oracle_terms.mean())
    runs = {
        "iwae, prior proposal": dict(bound="iwae", num_particles=num_particles),
        "ba, AmortizedNormal q(z|x)": dict(bound="ba", guide=q),
        "iwae, AmortizedNormal q(z|x)": dict(bound="iwae", guide=q, num_particles=num_particles),
        f"ais, prior start, T={ais_steps}": dict(
            bound="ais", num_particles=8, num_steps=ais_steps, progress=False
        ),
    }
    results = {"truth": scale * truth, "oracle": scale * oracle}
    print_fn(
        f"{'method':30s} {'lower':>8s} {'(se)':>7s} {'upper':>8s} {'(se)':>7s}  {'truth inside':>12s}  "
        f"{'oracle inside':>13s}  {'time':>6s}"
    )
    for label, kw in runs.items():
        t = time.perf_counter()
        est = mutual_information(lg.model, "x", joint=joint, seed=seed + 2, **kw)
        secs = time.perf_counter() - t
        results[label] = est.to_units(units)
        # each side within 3 standard errors: of the bound (truth), of the paired difference (oracle)
        ok_truth = (est.lower is None or est.lower - 3 * est.lower_se <= truth) and (
            est.upper is None or truth <= est.upper + 3 * est.upper_se
        )
        ok_oracle = True
        for side, sign in (("lower", 1.0), ("upper", -1.0)):
            if side in est.terms:
                d = sign * (est.terms[side] - oracle_terms)
                ok_oracle &= float(d.mean()) <= 3 * standard_error(d) + 1e-9
        finite = all(v is None or math.isfinite(v) for v in (est.lower, est.upper, est.lower_se, est.upper_se))
        if not finite:
            ok_truth = ok_oracle = False
            warnings.warn(f"{label}: a bound or its standard error is not finite ({est.lower}, {est.upper}); "
                          "this row carries no information", UserWarning, stacklevel=2)
        f = lambda v, w=8: " " * (w - 1) + "-" if v is None else f"{scale * v:{w}.3f}"  # noqa: E731
        print_fn(
            f"{label:30s} {f(est.lower)} {f(est.lower_se, 7)} {f(est.upper)} {f(est.upper_se, 7)}  "
            f"{'yes' if ok_truth else 'NO':>12s}  {'yes' if ok_oracle else 'NO':>13s}  {secs:5.1f}s"
        )
    print_fn("(se = Monte Carlo standard error over the N draws; inside = within 3 standard errors of "
             "each one-sided bound)")
    print_fn(f"truth {scale * truth:.3f} {units}; same-batch oracle mean[log p(x|z*) - log p(x)] = "
             f"{scale * oracle:.3f} {units}")
    print_fn(
        f"(N={num_samples} joint draws; K={num_particles} proposals for iwae, 8 chains for ais; "
        f"q trained {train_steps} steps in {t_fit:.1f}s)"
    )
    print_fn(
        "The prior-proposal IWAE lower bound is capped at log K = "
        f"{scale * math.log(num_particles):.3f} {units}; a learned q(z|x) or annealing (ais) "
        "closes the sandwich."
    )
    return results


def _check_device(device) -> torch.device:
    """``device`` as a torch.device this machine has; else the API's :class:`DeviceError` message."""
    dev = available_device(device)
    if dev is None:
        return torch.device("cpu")
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"the demo runs on 'cpu' or 'cuda[:<index>]', got device={str(dev)!r}")
    return dev
