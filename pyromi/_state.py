"""Process-global state around pyromi's public entry points: one call at a time, no leaked handlers.

Pyro keeps its effect-handler stack (``pyro.poutine.runtime._PYRO_STACK``), its plate-dimension
allocator and its parameter store in process-global variables, and Pyro samples from torch's global
generator. Two threads running Pyro models at once therefore corrupt each other's traces (duplicate
plates, duplicate site names) and interleave their random draws.

**Thread-safety rule.** Every public pyromi entry point holds one process-wide re-entrant lock for the
whole call: concurrent calls from several threads are safe and give the same numbers as the same calls
made one after another with the same seeds, but they run one at a time. For parallel work use
processes (``torch.distributed``, ``multiprocessing``). Other Pyro code that the user runs in another
thread at the same time is outside pyromi's control.

**Exception safety.** On every exit, normal or by an exception, the handler stack is restored to the
depth it had on entry: a handler that an interrupted model pass left behind is exited (which also
frees its plate dimension), so one failed call cannot poison later ones. A call that fails removes
the Pyro parameters it created; seeded calls restore torch's global RNG state (:func:`pyromi._rng.seeded`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

import pyro
from pyro.poutine.runtime import _PYRO_STACK

__all__ = ["entry_point", "pyro_lock", "unwind_handlers"]

F = TypeVar("F", bound=Callable)

#: held by every public entry point for the whole call (re-entrant: entry points call each other)
pyro_lock = threading.RLock()


def unwind_handlers(depth: int) -> int:
    """Exit the handlers above ``depth`` on Pyro's stack, innermost first; returns how many."""
    count = 0
    while len(_PYRO_STACK) > depth:
        handler = _PYRO_STACK[-1]
        try:
            handler.__exit__(None, None, None)
        except Exception:  # a handler that cannot exit cleanly: remove it by hand
            pass
        if _PYRO_STACK and _PYRO_STACK[-1] is handler:
            _PYRO_STACK.pop()
        count += 1
    return count


def entry_point(fn: F) -> F:
    """Decorate a public function or method: take :data:`pyro_lock`, restore the handler stack."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with pyro_lock:
            depth = len(_PYRO_STACK)
            store = pyro.get_param_store()
            params_before = set(store.keys())
            try:
                return fn(*args, **kwargs)
            except BaseException:
                # a failed call leaves no parameters of its own behind (a half-fitted guide)
                for name in set(store.keys()) - params_before:
                    del store[name]
                raise
            finally:
                unwind_handlers(depth)

    return wrapper  # type: ignore[return-value]


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside pyromi (the user's line)."""
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
