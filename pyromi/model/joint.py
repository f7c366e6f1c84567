"""Joint draws ``(x_i, z_i*) ~ p(x, z)`` under pyromi's sample plate (or the model's data plate), and
the observations a model is conditioned on by its own ``obs=``. ``self`` is the
:class:`~pyromi.model.ModelAdapter`."""

from __future__ import annotations

import torch
from pyro import poutine

from ..errors import SiteError, VectorizationError
from . import probe
from .scoring import JointSamples, check_finite_draws, check_finite_log_probs, sum_trailing, total
from .translate import PLAIN_STAGE

__all__ = ["sample_joint_batched", "data_observations"]


def sample_joint_batched(self, num_samples: int, validate: bool) -> tuple[JointSamples, poutine.Trace]:
    rows = self.joint_rows(num_samples)
    args, kwargs = self.arguments(rows, num_samples)
    with self._plates(None, num_samples):
        tr = self.call_traced(self._generative(), "under pyromi's sample plate", validate=validate,
                              args=args, kwargs=kwargs)
    names = self.observed_names + self.latent_names + self.discrete_names
    if validate:
        for name in names:
            value = tr.nodes[name]["value"]
            if value.dim() < 1 or value.shape[0] != num_samples:
                raise VectorizationError(
                    f"site '{name}' returned a value of shape {tuple(value.shape)} under an "
                    f"outer plate of size {num_samples}: it ignores leading batch dimensions. "
                    "Make the model broadcast over leading dimensions."
                )
            probe.check_batch_shape(name, tr.nodes[name]["fn"].batch_shape, (num_samples,),
                                    self._prototype.nodes[name], self.max_plate_nesting)
    check_finite_draws({n: tr.nodes[n]["value"] for n in names}, num_samples)
    observed = {n: tr.nodes[n]["value"].detach() for n in self.observed_names}
    latent = {n: tr.nodes[n]["value"].detach() for n in self.latent_names}
    discrete = {n: tr.nodes[n]["value"].detach() for n in self.discrete_names} or None
    observed.update(rows)
    if not self.densities:
        some = next(iter(observed.values()))
        zeros = torch.zeros(num_samples, dtype=torch.get_default_dtype(), device=some.device)
        return JointSamples(observed, latent, zeros, zeros), tr
    names = self.latent_names + self.discrete_names + self.scored_observed
    tr.compute_log_prob(site_filter=lambda name, site: name in names)
    site_lp = {n: sum_trailing(tr.nodes[n]["log_prob"], 1).expand(num_samples) for n in names}
    check_finite_log_probs(site_lp, num_samples)
    log_joint = None
    if self.enumerator is not None:
        # log p(z*) with the discrete latents summed out; log p(x | k*, z*) at the true k*
        with torch.no_grad():
            log_prior = self.enumerator.log_prior_at(latent, observed, num_samples).detach()
            log_joint = self.enumerator.log_joint_at(latent, observed, num_samples).detach()
    else:
        log_prior = total(site_lp, self.latent_names, (num_samples,), observed[self.observed_names[0]])
    like = next(iter(site_lp.values())) if site_lp else observed[self.observed_names[0]]
    log_lik = total(site_lp, self.scored_observed, (num_samples,), like)
    return JointSamples(observed, latent, log_prior.detach(), log_lik.detach(), discrete, log_joint), tr


def data_observations(self) -> dict[str, torch.Tensor]:
    """The observations the model is conditioned on by its own ``obs=`` (as written, with the
    user's arguments): ``(B,) + local_shape`` per observed site under a data plate of B data
    points (with the data arguments' covariate rows), else ``(1,) + local_shape``."""
    tr = self.call_traced(self._model, PLAIN_STAGE, validate=False)
    out = {}
    for name in self.observed_names:
        site = tr.nodes[name]
        if not site["is_observed"]:
            raise SiteError(
                f"observed site '{name}' has no obs= value in the model run with its "
                "arguments, so there are no data to read: pass the data as the model's "
                "argument (model(x) with obs=x), or pass data= as the site's values."
            )
        v = site["value"].detach()
        local = self.sites[name].local_shape
        out[name] = v.reshape((-1,) + tuple(local)) if self.data_plate is not None else v.reshape((1,) + tuple(local))
    if self.data_plate is not None:
        for key in self.data_plate.covariates():
            out[key] = self.data_plate.rows[key]
    return out
