"""Progress bars for the loops that can run for more than a few seconds, with one convention.

Every long-running entry point takes ``progress=``:

* ``None`` (the default): **automatic**, a bar appears once the run has lasted ``AUTO_DELAY``
  seconds, and only on an interactive terminal (stderr a TTY), so long runs show one, while short
  ones (tests, small examples), logs, CI and notebooks run headless stay clean (pass ``True``
  there to see one);
* ``True``: a bar from the first step; ``False``: never.

The bar is tqdm's (``tqdm.auto``: a widget in Jupyter, else text on stderr), never part of a
returned number; it disappears when the loop ends (``leave=False``) and is closed when the loop
raises (use it as a context manager).
"""

from __future__ import annotations

import time

__all__ = ["AUTO_DELAY", "ProgressBar", "check_progress"]

#: seconds after which an automatic (``progress=None``) bar appears
AUTO_DELAY = 3.0


def check_progress(progress) -> bool | None:
    """``progress`` if it is ``True``, ``False`` or ``None``, else a ``TypeError`` naming it."""
    if progress is None or isinstance(progress, bool):
        return progress
    raise TypeError(
        f"progress= must be True (a bar from the start), False (none) or None (a bar once the run "
        f"has taken {AUTO_DELAY:g} s), got {progress!r}"
    )


def _interactive() -> bool:
    import sys

    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def _tqdm(**kwargs):
    from tqdm.auto import tqdm

    return tqdm(**kwargs)


class ProgressBar:
    """A tqdm bar over ``total`` units of work, shown according to ``progress`` (see the module).

    ``with ProgressBar(total, "desc", progress) as bar: ... bar.update(1, postfix="loss 3.2")``.
    """

    def __init__(self, total: int, desc: str, progress: bool | None = None):
        self.total, self.desc = int(total), desc
        self.mode = check_progress(progress)
        self.n = 0
        self._bar = None
        self._start = time.perf_counter()
        if self.mode is True:
            self._open()

    def _open(self) -> None:
        self._bar = _tqdm(total=self.total, desc=self.desc, initial=self.n, leave=False)

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        """Count ``n`` more units done; ``postfix`` (e.g. the current objective) is shown after the bar."""
        self.n += n
        if self._bar is None:
            if self.mode is not None or time.perf_counter() - self._start < AUTO_DELAY \
                    or not _interactive():
                return
            self._open()
            if postfix is not None:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.refresh()
            return
        if postfix is not None:
            self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
