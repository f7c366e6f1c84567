"""The documentation builds without a warning, documents the public API, and its code runs.

1. ``sphinx-build -W --keep-going -b html docs <tmp>`` succeeds (skipped without sphinx and
   myst-nb), and the API page documents every name in ``pyromi.__all__`` and the public names of
   ``pyromi.oed``, ``pyromi.audit``, ``pyromi.mist``, ``pyromi.models``, ``pyromi.plots`` and
   ``pyromi.distributed``; every tutorial notebook is rendered (from its stored outputs: the build
   never executes a notebook).
2. The ```python blocks of every page (``docs/*.md``, ``docs/methods/*.md``) run in order in one
   namespace per page, as a reader would paste them into one session, with the sizes shrunk as in
   ``tests/test_readme.py`` (the same caps and the same ``shrink``); printed outputs quoted in a page
   (``print(est)  # I(x; y) ~= ...``) are checked wherever the code up to them ran as printed.
   ``PYROMI_DOCS_QUICK=0`` runs the blocks exactly as printed (minutes) and checks every quote.

The build runs in a subprocess started when the first test of this module starts, so that it
overlaps the code blocks (one torch thread) on a 2-core machine.
"""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

from .test_readme import run_blocks

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md")) + sorted((DOCS / "methods").glob("*.md"))
TUTORIALS = sorted((ROOT / "tutorials").glob("*.ipynb"))

#: submodules whose public names (their ``__all__``) the API page documents as ``pyromi.<mod>.<name>``
DOCUMENTED_MODULES = ("oed", "audit", "mist", "models", "plots", "distributed")


def quick() -> bool:
    return os.environ.get("PYROMI_DOCS_QUICK", "1") != "0"


def python_blocks(page: pathlib.Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.S | re.M)


def have_sphinx() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("sphinx", "myst_nb"))


@pytest.fixture(scope="module", autouse=True)
def docs_build(tmp_path_factory):
    """The HTML build, started in the background when the module's first test starts."""
    if not have_sphinx():
        yield None
        return
    tmp = tmp_path_factory.mktemp("docs")
    out, log = tmp / "html", tmp / "build.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
             "-d", str(tmp / "doctrees"), str(DOCS), str(out)],
            cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env,
        )
    try:
        yield proc, out, log
    finally:
        if proc.poll() is None:  # a test run that stopped early: do not leave the build behind
            proc.kill()
            proc.wait()


def test_every_page_with_code_is_found():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES if python_blocks(p)}
    assert {"getting_started.md", "methods/iwae.md", "methods/ais.md", "methods/mist.md",
            "methods/nested.md", "methods/eig.md"} <= names, names
    assert (DOCS / "conf.py").exists() and (DOCS / "index.md").exists()


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.relative_to(DOCS).as_posix())
def test_page_python_blocks_run(page):
    """Every block of the page runs after the ones before it; quoted outputs are what it prints."""
    import torch

    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:  # pragma: no cover - matplotlib is in the test extra
        pass
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster, and leaves a core to the build
    try:
        run_blocks(python_blocks(page), str(page.relative_to(DOCS)), {"__name__": "__docs__"}, quick())
    finally:
        torch.set_num_threads(threads)


def test_docs_build_without_warnings_and_document_the_api(docs_build):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    proc, out, log = docs_build
    rc = proc.wait(timeout=600)
    assert rc == 0, f"sphinx-build -W failed:\n{log.read_text()}"
    api = (out / "api.html").read_text(encoding="utf-8")
    documented = set(re.findall(r'<dt class="sig sig-object py" id="([^"]+)"', api))

    import importlib

    import pyromi

    missing = [n for n in pyromi.__all__ if f"pyromi.{n}" not in documented]
    for mod in DOCUMENTED_MODULES:
        module = importlib.import_module(f"pyromi.{mod}")
        missing += [f"{mod}.{n}" for n in module.__all__ if f"pyromi.{mod}.{n}" not in documented]
    assert not missing, f"not documented on the API page: {missing}"
    for nb in TUTORIALS:  # rendered from the stored outputs
        page = out / "_generated" / "tutorials" / f"{nb.stem}.html"
        assert page.exists(), page
        assert 'class="cell_output' in page.read_text(encoding="utf-8"), f"{nb.stem}: no stored output shown"
    for page in PAGES:
        assert (out / page.relative_to(DOCS).with_suffix(".html")).exists(), page
