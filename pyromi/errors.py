"""Exceptions raised by pyromi. Each message names the site or argument at fault and how to fix it."""


class PyromiError(ValueError):
    """Base class: the model or the arguments cannot give a valid MI bound as they stand."""


class SiteError(PyromiError):
    """A site name is unknown, missing, ambiguous, or of a kind the requested bound cannot use."""


class VectorizationError(PyromiError):
    """The model cannot be evaluated under pyromi's outer batch plates without changing its meaning."""


class DensityError(PyromiError):
    """A log density is NaN or infinite where the bound needs a finite value."""


class DeviceError(PyromiError):
    """Tensors of the model, guide or data live on another device (or dtype) than the one requested."""


class GuideError(PyromiError):
    """The guide/proposal cannot give per-sample log q(z|x) for the latent sites."""


class ModelError(PyromiError):
    """The model raised an error of its own (it fails without pyromi's batching, too)."""


class OptionError(PyromiError, TypeError):
    """A keyword the chosen method does not take (``mutual_information(bound=...)`` names the
    methods that do); a ``TypeError`` as for any misapplied keyword, and a ``ValueError`` as
    every pyromi argument error."""


class ResourceError(PyromiError, MemoryError):
    """A model pass or an estimator ran out of memory; the message says which setting to lower."""


class PyromiWarning(UserWarning):
    """Base class of pyromi's warnings: a returned number that is valid but says less than asked."""
