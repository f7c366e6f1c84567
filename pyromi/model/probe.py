"""Vectorisation checks of the probe pass: a batched evaluation must equal evaluating each sample on
its own, every batch dimension must be explained by a plate, and no site may mix samples."""

from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine
from pyro.distributions.transforms import biject_to
from pyro.poutine.util import site_is_subsample

from ..errors import DensityError, DeviceError, SiteError, VectorizationError
from .devices import same_device
from .packing import LatentPacking
from .sites import SiteInfo, fn_chain

__all__ = ["PROBE_N", "check_batch_shape", "check_no_mixing", "check_pairs_match", "per_sample_bytes",
           "run_probe", "probe_pairs", "check_latent_independent_of_x", "set_device_dtype"]

PROBE_N = 3  # a prime that rarely coincides with a model's own dimension sizes


def check_batch_shape(name: str, batch_shape: torch.Size, outer: tuple[int, ...], site: dict,
                      model_dims: int) -> None:
    """Every batch dimension of a site must be explained by pyromi's outer plates ``outer``
    (sizes, right-aligned at dims ``-1 - model_dims`` and left) or by one of the site's own plates
    (``site``: its node in a plain trace); any other dimension would silently pair values of
    different samples or particles."""
    plates = {f.dim: f.size for f in site["cond_indep_stack"] if f.vectorized}
    expected = []
    for d in range(-model_dims - len(outer), 0):
        if d < -model_dims:
            expected.append(outer[len(outer) + (d + model_dims)])
        else:
            expected.append(plates.get(d, 1))
    shape = tuple(batch_shape)
    ok = len(shape) <= len(expected) and all(
        s == 1 or s == e for s, e in zip(shape[::-1], expected[::-1])
    )
    if not ok:
        outer_names = ("particles", "samples")[-len(outer):]
        raise VectorizationError(
            f"site '{name}' has batch shape {shape} under pyromi's outer plates "
            f"({', '.join(f'{n}={k}' for n, k in zip(outer_names, outer))}), but only "
            f"{tuple(expected)} is explained by those plates and the model's own plates "
            f"({'none' if not plates else ', '.join(f'dim {d}: size {k}' for d, k in sorted(plates.items()))}). "
            "A dimension that no plate declares pairs values of different samples: typically "
            "a latent with an explicit singleton batch dimension (e.g. .expand([1, d])) "
            "combined by matrix products or squeeze(). Give latents only event dimensions "
            "(.to_event) and index from the right (x @ w.unsqueeze(-1), ..., dim=-1), or "
            "declare the dimension with a pyro.plate."
        )


def check_pairs_match(adapter, z_pair: dict, observed: dict, pair_lp: dict) -> None:
    """Each (particle, sample) pair scored on its own, in a plain run of the model conditioned on
    its values, must have the log densities of the batched pass ``pair_lp`` (``(2, N)`` per site)."""
    scored = set(adapter.latent_names + adapter.scored_observed)
    for p, i in ((0, 0), (0, 1), (1, 0)):
        data = {n: adapter.single_value(v[p, i]) for n, v in z_pair.items()}
        data.update(adapter.sample_values(observed, i))
        args, kwargs = adapter.arguments({k: v[i:i + 1] for k, v in observed.items()}, 1)
        tr_i = adapter.call_traced(poutine.condition(adapter.model, data=data), "on a single sample",
                                   validate=False, args=args, kwargs=kwargs)
        with pyro.validation_enabled(False):  # x_i may lie outside p(x | z_j)'s support
            tr_i.compute_log_prob(site_filter=lambda name, site: name in scored)
        for name in adapter.latent_names + adapter.scored_observed:
            lp_single = tr_i.nodes[name]["log_prob"].sum()
            lp_batch = pair_lp[name][p, i]
            if not torch.isclose(lp_single, lp_batch, rtol=1e-4, atol=1e-4):
                raise VectorizationError(
                    f"site '{name}': the log density of a sample evaluated on its own is "
                    f"{float(lp_single):.6g} but {float(lp_batch):.6g} inside pyromi's batch "
                    "plates. The model mixes values across leading batch dimensions (e.g. "
                    "z.sum(), z.mean(0), z.reshape(-1), z[0] on a sampled value); write it so "
                    "that it broadcasts over leading dimensions (z[..., i], dim=-1)."
                )


def check_no_mixing(adapter, tr: poutine.Trace) -> None:
    """Vectorisation check for the paths that score no likelihood (known-marginal bounds,
    MIST), without evaluating any density: each draw of the batched probe is run alone,
    conditioned on its values of every sample site (nuisance sites included), and each site's
    distribution parameters there must equal that draw's slice of the batched parameters. A
    model that mixes samples (``z.mean()``, ``z.sum()``, ``z[0]``) gives each x a
    distribution built from other samples' z and fails this."""
    names = [n for n, site in tr.nodes.items()
             if site["type"] == "sample" and not site_is_subsample(site)
             and not site["infer"].get("_deterministic") and n not in adapter.constant_names
             and site["value"].dim() > 0 and site["value"].shape[0] == PROBE_N]
    rows = adapter.joint_rows(PROBE_N)
    for i in range(PROBE_N):
        data = {n: adapter.single_value(tr.nodes[n]["value"][i]) for n in names}
        args, kwargs = adapter.arguments({k: v[i:i + 1] for k, v in rows.items()}, 1)
        tr_i = adapter.call_traced(poutine.condition(adapter.model, data=data), "on a single sample",
                                   validate=False, args=args, kwargs=kwargs)
        for n in names:
            site = tr_i.nodes.get(n)
            if site is None:
                continue
            for key, batched, single in _param_pairs(tr.nodes[n]["fn"], site["fn"]):
                b = batched[i]
                if adapter.data_plate is not None:
                    single = single.squeeze(0) if single.dim() > 0 and single.shape[0] == 1 else single
                try:
                    b, a = torch.broadcast_tensors(b, single)
                except RuntimeError:
                    continue
                if not bool(torch.isclose(a.double(), b.double(), rtol=1e-4, atol=1e-5,
                                          equal_nan=True).all()):
                    raise VectorizationError(
                        f"site '{n}': the parameter '{key}' of its distribution differs "
                        "between a sample evaluated on its own and the same sample inside "
                        "pyromi's batch plate. The model mixes values across leading batch "
                        "dimensions (e.g. z.mean(), z.sum(), z.reshape(-1), z[0] on a sampled "
                        "value); write it so that it broadcasts over leading dimensions "
                        "(z[..., i], dim=-1)."
                    )


def check_shapes_kept(adapter, prototype: poutine.Trace) -> None:
    """Without densities, vectorisation is checked by shape: under the sample plate every site
    must keep the shape it has in a plain run (left-padded to the model's plates)."""
    for name in adapter.observed_names + adapter.latent_names:
        plain = prototype.nodes[name]["value"].shape
        numel = math.prod(plain)
        if adapter.data_plate is not None:
            numel //= max(1, adapter.data_plate.size)
        if numel != math.prod(adapter.sites[name].local_shape):
            raise VectorizationError(
                f"site '{name}' has shape {tuple(plain)} in a plain run but "
                f"{tuple(adapter.sites[name].local_shape)} per sample under pyromi's sample "
                "plate: the model mixes values across leading batch dimensions. Write it so "
                "that it broadcasts over leading dimensions (z[..., i], dim=-1)."
            )


def check_constants(constant_log_probs: dict) -> None:
    """A site fixed in the model must have the same density at every latent value."""
    for name, lp in constant_log_probs.items():
        if not torch.allclose(lp, lp.reshape(-1)[0].expand_as(lp), rtol=1e-5, atol=1e-6):
            raise SiteError(
                f"site '{name}' is fixed in the model (obs= or pyro.condition) but its density "
                "depends on the latent sites: the model then describes a posterior given "
                f"'{name}', from which pyromi cannot draw joint samples (x, z) by running the "
                f"model. Either add '{name}' to observed= (then it is simulated, and the MI is "
                f"about x and '{name}' together), or remove the obs=/condition so that it is "
                "a latent site."
            )


def per_sample_bytes(tr: poutine.Trace, num_samples: int) -> int:
    """Bytes per sample of the batched tensors of a trace drawn under a sample plate of size
    ``num_samples``: site values and the tensor parameters of their distributions."""
    seen: set[int] = set()
    total = 0

    def add(t) -> None:
        nonlocal total
        if isinstance(t, torch.Tensor) and id(t) not in seen:
            seen.add(id(t))
            if t.dim() > 0 and t.shape[0] == num_samples:
                total += t.numel() * t.element_size() // num_samples

    for site in tr.nodes.values():
        if site["type"] != "sample":
            continue
        add(site["value"])
        for fn in fn_chain(site["fn"]):
            for v in vars(fn).values():
                add(v)
    return total


def _param_pairs(batched_fn, single_fn):
    """``(name, batched, single)`` for the tensor parameters two distributions of the same site
    share (walking ``base_dist`` wrappers): batched ones with the probe's leading sample dim."""
    out = []
    for b, a in zip(fn_chain(batched_fn), fn_chain(single_fn)):
        if type(b) is not type(a):
            break
        vb, va = vars(b), vars(a)
        for key, tb in vb.items():
            ta = va.get(key)
            if (isinstance(tb, torch.Tensor) and isinstance(ta, torch.Tensor) and tb.dim() > 0
                    and tb.shape[0] == PROBE_N and tb.is_floating_point()):
                out.append((key, tb.detach(), ta.detach()))
    return out


# ---------------------------------------------------------------- the adapter's probe pass
# (``self`` is the ModelAdapter being set up)
def run_probe(self) -> None:
    """Validated pass under the outer plates: shapes, devices, dtypes, vectorisation checks."""
    joint, tr = self._sample_joint_batched(PROBE_N, validate=True)
    set_device_dtype(self, joint)
    self.sites: dict[str, SiteInfo] = {}
    self._pair_bytes = 4 * max(1, per_sample_bytes(tr, PROBE_N))
    for name in self.observed_names + self.latent_names:
        site = tr.nodes[name]
        value = site["value"]
        support = site["fn"].support
        # with the sample dimension, so that parameters of latent-dependent supports broadcast
        ushape = (biject_to(support).inverse_shape(value.shape)[1:]
                  if name in self.latent_names else value.shape[1:])
        self.sites[name] = SiteInfo(name, value.shape[1:], site["fn"].event_dim,
                                    torch.Size(ushape), support)
    self.packing = LatentPacking(self.sites, self.latent_names)
    if not self.densities:
        check_shapes_kept(self, self._prototype)
        check_no_mixing(self, tr)
        return
    if not self.likelihood:  # the pair check below scores the latents only
        check_no_mixing(self, tr)
    ev, z_pair, perm = probe_pairs(self, joint)
    for name, batch_shape in ev.batch_shapes.items():
        check_batch_shape(name, batch_shape, (2, PROBE_N), self._prototype.nodes[name],
                                self.max_plate_nesting)
    if self.enumerator is None:
        check_pairs_match(self, z_pair, joint.observed, ev.site_log_probs)
    check_latent_independent_of_x(self, joint, z_pair, perm, ev)

def probe_pairs(self, joint):
    """Score each sample's x under its own z* (particle 0) and another sample's (particle 1):
    NaN densities and fixed sites whose density depends on z are errors."""
    perm = torch.tensor([1, 2, 0], device=joint.log_prior.device)
    z_pair = {n: torch.stack([v, v[perm]]) for n, v in joint.latent.items()}
    # without Pyro's support checks: x_i may lie outside the support of p(x | z_j) (a
    # hard-support likelihood), which is density 0, not an error; NaN densities are checked
    with self._translate_errors("under pyromi's particle and sample plates"):
        with pyro.validation_enabled(False):
            ev = self._score((2, PROBE_N), joint.observed, latent=z_pair,
                             constant_names=self.constant_names)
    for name, lp in ev.site_log_probs.items():
        if bool(torch.isnan(lp).any()):
            raise DensityError(
                f"the log density of site '{name}' is NaN at some of pyromi's probe draws "
                "(each sample's x scored under its own and another sample's z). The model is "
                "undefined there: check the site's distribution parameters (NaN or infinite "
                "locations, scales that reach 0) for every value the latents can take."
            )
    check_constants(ev.constant_log_probs)
    return ev, z_pair, perm

def check_latent_independent_of_x(self, joint, z_pair, perm, pair_ev) -> None:
    """log p(z) must not depend on x: I(x; z) = E[log p(x|z) - log p(x)] needs log p(z) to be
    the sum of the latent sites' densities under the generative order (with enumerated discrete
    latents: log p(z) with them summed out). ``pair_ev``: the probe's pair pass."""
    if not self.latent_names:
        return
    z_own = {n: v[0:1] for n, v in z_pair.items()}
    context = set(getattr(self, "context_names", ()))  # sites the latents may depend on
    x_other = {n: (v if n in context else v[perm]) for n, v in joint.observed.items()}
    with self._translate_errors("under pyromi's particle and sample plates"):
        with pyro.validation_enabled(False):
            ev = self._score((1, PROBE_N), x_other, latent=z_own)
    if getattr(ev, "log_prior", None) is not None:  # enumerated: the contracted log p(z)
        checks = {"the latent sites": (ev.log_prior[0], pair_ev.log_prior[0])}
    else:
        checks = {f"latent site '{n}'": (ev.site_log_probs[n][0], pair_ev.site_log_probs[n][0])
                  for n in self.latent_names}
    for what, (a, b) in checks.items():
        if not torch.allclose(a, b, rtol=1e-5, atol=1e-5):
            name = what
            raise SiteError(
                f"the density of {name} depends on the observed sites "
                f"{self.observed_names}: pyromi needs a generative model in which every latent "
                "site is drawn from p(z) before, and independently of, the observations. "
                "Reorder the model or move that site to observed=."
            )

def set_device_dtype(self, joint) -> None:
    device = None
    for name in self.observed_names + self.latent_names:
        value = joint.observed.get(name, joint.latent.get(name))
        device = device or value.device
        if self.requested_device is not None and not same_device(value.device, self.requested_device):
            raise DeviceError(
                f"site '{name}' produced a tensor on {value.device} but device="
                f"{self.requested_device} was requested. Move the model's tensors (constants, "
                "nn.Module weights, model_args) to that device, or pass "
                f"device='{value.device}'."
            )
        if device is not None and not same_device(value.device, device):
            raise DeviceError(
                f"site '{name}' is on {value.device} while other sites are on {device}; "
                "create all of the model's tensors on one device."
            )
    self.device = self.requested_device or device
    if any(not joint.latent[n].is_floating_point() for n in self.latent_names):
        raise SiteError("latent sites must be real-valued (floating point)")
    if self.requested_dtype is not None:
        for name in self.latent_names:
            if joint.latent[name].dtype != self.requested_dtype:
                raise DeviceError(
                    f"latent site '{name}' has dtype {joint.latent[name].dtype} but dtype="
                    f"{self.requested_dtype} was requested. Build the model's parameters in "
                    f"that dtype, or leave dtype=None."
                )
    some = joint.latent[self.latent_names[0]] if self.latent_names else joint.log_prior
    self.dtype = self.requested_dtype or (
        some.dtype if self.latent_names else joint.observed[self.observed_names[0]].dtype
        if joint.observed[self.observed_names[0]].is_floating_point() else torch.get_default_dtype())
