"""Sphinx configuration for pyromi's documentation.

Build (warnings are errors; nothing is downloaded and no notebook is executed)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The tutorial notebooks live in ``tutorials/`` at the repository root. Sphinx only reads sources
under ``docs/``, so each build first copies them into ``docs/_generated/tutorials/`` (git-ignored),
where myst-nb renders them with the outputs stored in the notebooks (``nb_execution_mode = "off"``).
"""

from __future__ import annotations

import pathlib
import shutil
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document the working tree's pyromi, installed or not

import pyromi  # noqa: E402  (after the path is set)


def copy_tutorials() -> list[str]:
    """Mirror ``tutorials/*.ipynb`` into ``docs/_generated/tutorials/``; return the copied stems.

    Unchanged notebooks are left alone (so Sphinx does not re-read them), changed ones replaced,
    and notebooks deleted from ``tutorials/`` removed from the copy.
    """
    source = ROOT / "tutorials"
    target = DOCS / "_generated" / "tutorials"
    target.mkdir(parents=True, exist_ok=True)
    notebooks = sorted(source.glob("*.ipynb"))
    for nb in notebooks:
        copy = target / nb.name
        if not copy.exists() or copy.read_bytes() != nb.read_bytes():
            shutil.copy2(nb, copy)
    for stale in target.glob("*.ipynb"):
        if not (source / stale.name).exists():
            stale.unlink()
    return [nb.stem for nb in notebooks]


TUTORIALS = copy_tutorials()

# -- Project ---------------------------------------------------------------------------------------

project = "pyromi"
author = "the pyromi authors"
copyright = "the pyromi authors; Apache-2.0"
version = release = pyromi.__version__

# -- General ---------------------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_nb",  # Markdown pages (MyST) and the tutorial notebooks
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
root_doc = "index"

# -- MyST and myst-nb ------------------------------------------------------------------------------

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # render the outputs stored in the notebooks; never run them
nb_merge_streams = True  # one block per cell for interleaved stdout/stderr

# -- autodoc and napoleon (Google-style docstrings) ------------------------------------------------

autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True  # show ``max_batch=2**18`` as written, not 262144
autoclass_content = "both"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# -- HTML ------------------------------------------------------------------------------------------

html_theme = "alabaster"  # built into Sphinx: no download at build time
html_title = f"pyromi {release}"
html_theme_options = {
    "description": "Mutual-information bounds for Pyro models",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
