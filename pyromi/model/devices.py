"""Devices and dtypes: the user's ``device=`` / ``dtype=`` arguments as torch objects, checked."""

from __future__ import annotations

import torch

from ..errors import DeviceError

__all__ = ["available_device", "as_device", "as_dtype", "same_device"]


def as_device(device) -> torch.device | None:
    """``device`` (a torch.device, ``'cpu'``, ``'cuda:0'``, an index or None) as a torch.device."""
    if device is None or isinstance(device, torch.device):
        return device
    if not isinstance(device, (str, int)) or isinstance(device, bool):
        raise TypeError(f"device= must be a torch.device, a string such as 'cpu' or 'cuda:0', or None; got {device!r}")
    try:
        return torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"device={device!r} is not a device torch knows; use 'cpu', 'cuda' or 'cuda:<index>' "
            "(or leave device=None to use the model's own device)."
        ) from None


def available_device(device) -> torch.device | None:
    """``device`` as a torch.device that this machine has (None stays None), or a
    :class:`DeviceError` saying what to pass instead."""
    dev = as_device(device)
    if dev is not None and dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device={dev} was requested but CUDA is not available on this machine; pass "
                "device='cpu' (or leave device=None)."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device={dev} was requested but this machine has {torch.cuda.device_count()} CUDA "
                "device(s); pass device='cuda:0' or device='cpu'."
            )
        if dev.index is None:  # 'cuda' is the current device: name it, so that devices compare equal
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


_DTYPES = {"float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
           "float32": torch.float32, "float": torch.float32, "float64": torch.float64,
           "double": torch.float64}


def as_dtype(dtype) -> torch.dtype | None:
    """``dtype`` (a floating torch dtype, its name, or None) as a torch dtype."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        key = dtype.removeprefix("torch.")
        if key in _DTYPES:
            return _DTYPES[key]
    elif isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    raise TypeError(
        f"dtype= must be a floating torch dtype (torch.float32, torch.float64) or its name "
        f"('float32', 'float64'), or None for the model's own dtype; got {dtype!r}."
    )


def same_device(a: torch.device, b: torch.device) -> bool:
    """True if ``a`` and ``b`` name the same device (``cuda`` and ``cuda:<current>`` included)."""
    if a.type != b.type:
        return False
    if a.type == "cuda":
        ia = a.index if a.index is not None else torch.cuda.current_device()
        ib = b.index if b.index is not None else torch.cuda.current_device()
        return ia == ib
    return True
