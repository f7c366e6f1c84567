"""Data plates: models written as ``model(x)`` whose observed site sits in a plate over data points.

Pyro's VAE example writes ``with pyro.plate("data", x.shape[0]): z = pyro.sample("latent", ...);
pyro.sample("obs", ..., obs=x.reshape(-1, 784))``. When every latent and observed site sits in
such a plate, the plate's elements are independent pairs ``(x_i, z_i)``, and pyromi treats them as
its N joint samples: the bounds are on the per-data-point ``I(x_i; z_i)`` (the convention of the
VAE literature), and the plate takes the place of pyromi's own sample plate.

The model's *data arguments* are the tensors among its arguments whose first dimension is the
plate's size, and the plate *follows* them: run with m rows, the plate has size m. A data argument
whose values are an observed site's ``obs=`` value (``x`` for ``obs=x.reshape(-1, 784)``) is that
site's value, reshaped; every other one (covariates) travels with the samples, row by row, as an
entry ``"_pm_arg:<position or keyword>"`` of the observed values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from pyro import poutine

from ..errors import SiteError

__all__ = ["DataPlate", "find_data_plate", "ROW_PREFIX"]

ROW_PREFIX = "_pm_arg:"


class DataPlate(NamedTuple):
    """A plate over data points: its name, dim and size in the model's own run, and how to build the
    model's arguments for m samples (``rows`` keys: ``"_pm_arg:0"`` for the first positional
    argument, ``"_pm_arg:name"`` for a keyword; ``obs_args`` maps such keys to the observed site
    whose value they are)."""

    name: str
    dim: int
    size: int
    rows: dict[str, torch.Tensor]
    obs_args: dict[str, str]

    def covariates(self) -> list[str]:
        return [k for k in self.rows if k not in self.obs_args]

    def _row_index(self, num_samples: int, device) -> torch.Tensor:
        """Row ``i mod size`` of each sample i; inside a rank's share (``pyromi.distributed``) i is
        the sample's global index, so that N samples over W ranks use the rows one process would."""
        from ..distributed import current_shard

        start = (current_shard() or (0, 0))[0]
        return (torch.arange(num_samples, device=device) + start) % self.size

    def sample_rows(self, num_samples: int) -> dict[str, torch.Tensor]:
        """The covariate rows of ``num_samples`` samples: row ``i mod size`` for sample i (every data
        point equally often when ``num_samples`` is a multiple of the plate's size)."""
        if not self.covariates():
            return {}
        any_row = next(iter(self.rows.values()))
        idx = self._row_index(num_samples, any_row.device)
        return {k: self.rows[k][idx] for k in self.covariates()}

    def arguments(self, args: tuple, kwargs: dict, observed: dict[str, torch.Tensor],
                  num_samples: int) -> tuple[tuple, dict]:
        """The model's arguments for ``num_samples`` samples with values ``observed`` (observed
        sites, and covariate rows under ``_pm_arg:`` keys; missing ones are taken as in
        :meth:`sample_rows`)."""
        args, kwargs = list(args), dict(kwargs)
        fallback = None
        for key, full in self.rows.items():
            if key in self.obs_args and self.obs_args[key] in observed:
                v = observed[self.obs_args[key]]
                value = v.reshape((v.shape[0],) + full.shape[1:]).to(full.dtype)
            elif key in observed:
                value = observed[key]
            else:
                fallback = fallback if fallback is not None else self._row_index(num_samples, full.device)
                value = full[fallback]
            _put(args, kwargs, key, value)
        return tuple(args), kwargs


def _put(args: list, kwargs: dict, key: str, value) -> None:
    ref = key[len(ROW_PREFIX):]
    if ref.isdigit():
        args[int(ref)] = value
    else:
        kwargs[ref] = value


def _tensor_arguments(args: tuple, kwargs: dict):
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            yield f"{ROW_PREFIX}{i}", a
    for k, a in kwargs.items():
        if isinstance(a, torch.Tensor):
            yield f"{ROW_PREFIX}{k}", a


def find_data_plate(
    trace_plain: Callable[[tuple, dict], "poutine.Trace"],
    prototype,
    args: tuple,
    kwargs: dict,
    observed: list[str],
    latent: list[str],
    max_plate_nesting: int,
    requested: str | bool | None,
) -> DataPlate | None:
    """The data plate of the model, or None.

    ``requested``: None (detect: a plate that contains every observed and latent site and follows
    the first dimension of a data argument), False (never), or a plate's name (that plate; an
    error says why it cannot be one). ``trace_plain(args, kwargs)`` runs the model plainly
    (observed sites simulated) and returns its trace; ``prototype`` is that trace for the user's
    arguments.
    """
    if requested is False:
        return None
    if requested is not None and not isinstance(requested, str):
        raise TypeError(
            f"data_plate= must be the name of a pyro.plate over data points (e.g. 'data'), None to "
            f"detect it, or False; got {requested!r}."
        )
    frames = {}
    for name in observed:
        for f in prototype.nodes[name]["cond_indep_stack"]:
            if f.vectorized:
                frames[f.name] = f
    if requested is not None:
        if requested not in frames:
            all_plates = sorted({f.name for s in prototype.nodes.values() if s["type"] == "sample"
                                 for f in s.get("cond_indep_stack", ()) if f.vectorized})
            raise SiteError(
                f"data_plate='{requested}': the observed site(s) {observed} are not inside a plate "
                f"of that name (the model's plates: {all_plates or 'none'}). Name the plate that "
                "runs over data points, or leave data_plate=None."
            )
        candidates = [frames[requested]]
    else:
        candidates = list(frames.values())
    for frame in candidates:
        explicit = requested is not None
        tensors = [(k, a) for k, a in _tensor_arguments(args, kwargs) if a.dim() >= 1 and a.shape[0] == frame.size]
        if not tensors:
            if explicit:
                raise SiteError(
                    f"data_plate='{frame.name}': no argument of the model has the plate's size "
                    f"{frame.size} as its first dimension, so pyromi cannot vary the number of "
                    "data points. Pass the data as model_args=(x,) with the plate written as "
                    "pyro.plate(name, x.shape[0])."
                )
            continue
        outside = [n for n in observed + latent
                   if frame not in prototype.nodes[n]["cond_indep_stack"]]
        if outside:
            if explicit:
                raise SiteError(
                    f"data_plate='{frame.name}': site(s) {outside} lie outside the plate, so the "
                    "data points are not independent pairs (x_i, z_i) (a global latent is shared "
                    "by all of them). Leave data_plate=None to measure I(x; z) of the whole data "
                    "set, with the global latents as z."
                )
            continue
        if frame.dim != -max_plate_nesting:
            if explicit:
                raise SiteError(
                    f"data_plate='{frame.name}' is at dim {frame.dim} but the model has plates "
                    f"down to dim {-max_plate_nesting}: pyromi needs the data plate left of the "
                    f"model's other plates. Give it dim={-max_plate_nesting} "
                    f"(pyro.plate('{frame.name}', n, dim={-max_plate_nesting})) or leave "
                    "data_plate=None."
                )
            continue
        # the plate must follow the arguments: with m rows it has size m
        m = 2 if frame.size != 2 else 3
        idx = torch.arange(m) % frame.size
        rows = dict(tensors)
        args2, kwargs2 = list(args), dict(kwargs)
        for key, a in tensors:
            _put(args2, kwargs2, key, a[idx.to(a.device)])
        try:
            tr = trace_plain(tuple(args2), kwargs2)
            sizes = {f.size for f in tr.nodes[observed[0]]["cond_indep_stack"] if f.name == frame.name}
        except Exception:
            sizes = set()
        if sizes != {m}:
            if explicit:
                raise SiteError(
                    f"data_plate='{frame.name}': the plate's size does not follow the first "
                    f"dimension of the model's argument(s) (with {m} rows it had size "
                    f"{sorted(sizes) or 'an error'}). Write the plate as "
                    f"pyro.plate('{frame.name}', x.shape[0]) for the data argument x."
                )
            continue
        obs_args = {}
        for key, a in tensors:
            for name in observed:
                obs = prototype.nodes[name]["infer"].get("obs")
                if (isinstance(obs, torch.Tensor) and obs.numel() == a.numel()
                        and obs.shape[:1] == a.shape[:1] and torch.equal(obs.reshape(-1).to(a.dtype), a.reshape(-1))):
                    obs_args[key] = name
        return DataPlate(frame.name, frame.dim, frame.size, rows, obs_args)
    return None
