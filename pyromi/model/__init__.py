"""The model layer: a Pyro model seen as a joint density p(x, z) = p(z) p(x | z).

* :mod:`.sites` — site discovery and validation (which sites are x, z, constants, discrete);
* :mod:`.scoring` — one scoring pass: set site values, return every site's log density;
* :mod:`.packing` — the unconstrained latent vector HMC moves in;
* :mod:`.probe` — vectorisation checks of the probe pass;
* :mod:`.data` — data plates (``model(x)`` with ``pyro.plate("data", x.shape[0])``);
* :mod:`.sequential` — the fallback for models that cannot be batched;
* :mod:`.enumeration` / :mod:`.enumerated` — discrete latents summed out by enumeration;
* :mod:`.reparam` — ``reparam="auto"`` (loc-scale reparameterisation of funnels);
* :mod:`.translate`, :mod:`.devices` — errors that name the site, devices and dtypes;
* :mod:`.adapter` — :class:`ModelAdapter`, which ties them together.
"""

from .adapter import PARTICLE_PLATE, SAMPLE_PLATE, ModelAdapter
from .devices import available_device
from .scoring import JointSamples, ModelEvaluation, sum_trailing
from .sites import SiteInfo
from .translate import is_out_of_memory, out_of_memory_error

__all__ = [
    "ModelAdapter",
    "JointSamples",
    "ModelEvaluation",
    "SiteInfo",
    "PARTICLE_PLATE",
    "SAMPLE_PLATE",
    "available_device",
    "is_out_of_memory",
    "out_of_memory_error",
    "sum_trailing",
]
