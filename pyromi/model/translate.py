"""Error translation: an exception raised inside a model pass, turned into a pyromi error that
names the site and says what to change."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from pyro.poutine.messenger import Messenger

from ..errors import (
    DensityError,
    DeviceError,
    ModelError,
    PyromiError,
    ResourceError,
    SiteError,
    VectorizationError,
)

__all__ = ["LastSite", "translate_errors", "is_out_of_memory", "out_of_memory_error", "PLAIN_STAGE"]

#: the stage name of a model run without pyromi's plates (its errors are the model's own)
PLAIN_STAGE = "when run on its own (no pyromi plates)"


class LastSite(Messenger):
    """Remember the sample site being processed and the last one completed, to name them when a
    model fails part-way."""

    def __init__(self):
        super().__init__()
        self.last: str | None = None
        self.current: str | None = None

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample":
            self.current = msg["name"]

    def _postprocess_message(self, msg) -> None:
        if msg["type"] == "sample":
            self.last = msg["name"]

    def where(self) -> str:
        if self.current is not None and self.current != self.last:
            return f" at site '{self.current}'"
        if self.last is not None:
            return f" after site '{self.last}'"
        return " before its first sample site"


@contextlib.contextmanager
def translate_errors(stage: str, last: LastSite | None = None,
                     fails_on_its_own: Callable[[], bool] | None = None):
    """Turn exceptions raised by the model during ``stage`` into errors that say what to change.

    ``fails_on_its_own()`` re-runs the model without pyromi's plates: an error that also happens
    there is the model's own (:class:`ModelError`), not one of vectorisation.
    """
    try:
        yield
    except PyromiError:
        raise
    except Exception as e:
        if is_out_of_memory(e):
            raise out_of_memory_error(f"the model {stage}", e) from e
        where = "" if last is None else last.where()
        msg = str(e).split("Trace Shapes:")[0].rstrip()  # drop Pyro's shape dump
        if isinstance(e, ValueError) and (
            "to satisfy the constraint" in msg or "to be within the support" in msg
        ):
            what = "invalid parameters" if "to satisfy the constraint" in msg else "a value outside its support"
            first = first_sentence(msg)
            nxt = " (in the distribution of the site sampled next)" if where.startswith(" after") else ""
            raise DensityError(
                f"a distribution in the model received {what} {stage}{where}{nxt}: {first}. "
                "Check the parameters of the site's distribution (a NaN or infinite "
                "location, a scale that can reach 0 or go negative, probabilities outside "
                "[0, 1]) at the latent values the model can draw."
            ) from e
        if isinstance(e, NotImplementedError) and _raised_by_expand(e):
            raise VectorizationError(
                f"a distribution in the model cannot be batched {stage}{where}: its expand() raised "
                f"NotImplementedError{': ' + msg.rstrip('.') if msg else ''}, so the site cannot sit inside a "
                "plate (pyromi's outer plates included). For dist.LKJ this is a Pyro bug "
                "(pyro-ppl/pyro#3480): sample the Cholesky factor instead, "
                "L = pyro.sample('L', dist.LKJCholesky(d, eta)), and use C = L @ L.T where the "
                "model needs the matrix (I(x; L) = I(x; C): L -> L L^T is a bijection)."
            ) from e
        if isinstance(e, NotImplementedError):
            raise SiteError(
                f"a distribution in the model raised NotImplementedError {stage}{where}"
                f"{': ' + msg.rstrip('.') if msg else ''}. pyromi draws joint samples (x, z) ~ p(x, z) from "
                "the model, so every site must be samplable, and the latent sites need a "
                "normalised density p(z) (improper priors such as ImproperUniform have neither; "
                "replace them by a proper prior)."
            ) from e
        if "device" in msg.lower():
            raise DeviceError(
                f"the model failed {stage}{where} with a device mismatch: {msg}. Create the "
                "model's tensors (constants, nn.Module weights, model_args) on one device, the "
                "one passed as device=, e.g. W = W.to(device)."
            ) from e
        plain = stage.startswith(PLAIN_STAGE)
        if not plain and fails_on_its_own is not None and fails_on_its_own():
            raise ModelError(
                f"the model raised {type(e).__name__} {stage}{where}: {msg}. It also fails when "
                "run again on its own, without pyromi's plates, so this is an error of the model "
                "itself (one that depends on the values drawn or on how often it is called), "
                "not of its vectorisation: check that model(*model_args, **model_kwargs) runs "
                "reliably in plain Pyro."
            ) from e
        if plain:
            raise ModelError(
                f"the model raised {type(e).__name__} {stage}{where}: {msg}. This is an "
                "error of the model itself, before pyromi adds any batch dimension: check "
                "that model(*model_args, **model_kwargs) runs in plain Pyro."
            ) from e
        if "Shape mismatch inside plate('_pm_" in msg:
            raise VectorizationError(
                f"the model is not vectorisable{where} ({stage}): {msg}. pyromi "
                "evaluates many samples at once under outer plates left of the model's own "
                "plates; every site must declare its event dimensions, e.g. "
                "dist.Normal(loc, scale).to_event(1), or put batch dimensions inside a "
                "pyro.plate, and the model must not add dimensions to sampled values by hand "
                "(z.unsqueeze(-1) on a site outside a plate: let the plate broadcast instead)."
            ) from e
        raise VectorizationError(
            f"the model raised {type(e).__name__} {stage}{where}: {msg}. If the model runs on "
            "its own, it probably is not vectorisable: pyromi adds outer batch dimensions (left "
            "of the model's plates) to every sampled value, so the model must broadcast over "
            "leading dimensions (use `...` indexing, `.to_event`, no reshape(-1)/flatten/sum "
            "over all dimensions)."
        ) from e


def _raised_by_expand(e: BaseException) -> bool:
    """True if the exception was raised inside a distribution's ``expand``."""
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "expand":
            return True
        tb = tb.tb_next
    return False


def is_out_of_memory(e: BaseException) -> bool:
    """True for allocator failures: ``MemoryError``, torch's CPU ``can't allocate memory`` and
    CUDA out of memory."""
    if isinstance(e, MemoryError):
        return True
    if not isinstance(e, RuntimeError):
        return False
    if isinstance(e, getattr(torch, "OutOfMemoryError", ())):
        return True
    text = str(e).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def out_of_memory_error(what: str, e: BaseException) -> ResourceError:
    """The :class:`ResourceError` for an allocator failure in ``what``, saying what to lower."""
    detail = str(e).splitlines()[0] if str(e) else type(e).__name__
    return ResourceError(
        f"{what} ran out of memory: {detail}. Lower max_memory= (bytes per model pass; default "
        "2**29) or max_batch=, num_particles=, num_samples= so that fewer (particle, sample) pairs "
        "are evaluated at once."
    )


def first_sentence(msg: str) -> str:
    """torch's validation message without its tensor dump: the text before ', but found'."""
    head = msg.split(", but found")[0].split("\n")[0]
    head = head.split(" of distribution ")[0]
    return head.strip().rstrip(".:")
