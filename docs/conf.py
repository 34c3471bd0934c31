"""Sphinx configuration of the hiref documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import os
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))
if (ROOT / "src").is_dir():  # a source checkout that is not installed
    sys.path.insert(0, str(ROOT / "src"))

import hiref  # noqa: E402

# sphinx-autodoc-typehints 3.6 calls an API that Sphinx 9 deprecates, once per page: noise only.
warnings.filterwarnings("ignore", message=r".*set_application.* is deprecated")

# -- Project -----------------------------------------------------------------------------------

project = "hiref"
author = "hiref developers"
copyright = f"{datetime.now(tz=UTC):%Y}, {author}"
release = hiref.__version__
version = ".".join(release.split(".")[:2])

# -- Extensions --------------------------------------------------------------------------------

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # before sphinx_autodoc_typehints
    "sphinx_autodoc_typehints",
    "sphinx.ext.mathjax",
    # ours, in docs/_ext
    "hiref_api",  # API listings generated from every subpackage's __all__
    "hiref_benchmarks",  # performance tables rendered from benchmarks/results/*.json
    "hiref_cli",  # the `hiref` command documented from its argparse parser
    "hiref_tutorials",  # the notebooks of ../tutorials, copied in at build time
]

# No network at build time: intersphinx is opt-in (HIREF_DOCS_INTERSPHINX=1).
if os.environ.get("HIREF_DOCS_INTERSPHINX", "").strip() not in {"", "0"}:
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
        "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
        "pandas": ("https://pandas.pydata.org/docs/", None),
        "matplotlib": ("https://matplotlib.org/stable/", None),
    }

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "jupyter_execute"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
smartquotes_action = "qe"  # quotes and ellipses only: keep "--option" as typed

# -- Paths of our extensions (relative to this folder) ------------------------------------------

hiref_benchmarks_dir = "../benchmarks/results"
hiref_tutorials_source = "../tutorials"
hiref_tutorials_order = ["dlpfc", "merfish", "mosta"]

# -- MyST / myst-nb ----------------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # tutorials are committed with their outputs and never run here
nb_merge_streams = True
nb_output_stderr = "remove"  # progress bars and warnings of the saved runs

# -- autodoc / autosummary / napoleon / typehints ----------------------------------------------

autosummary_generate = True
autosummary_imported_members = False
autodoc_member_order = "bysource"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_use_ivar = False
# hiref's Returns sections are prose (sentences, lists, definition lists; the annotation gives
# the type). napoleon's numpy parser would read each line as "name : type" and cut the text at
# colons, so the section is rendered as written, under a "Returns" heading.
napoleon_custom_sections = ["Returns"]
typehints_defaults = "comma"
typehints_use_signature = False
always_use_bars_union = True

# -- HTML --------------------------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = f"hiref {release}"
html_show_sourcelink = False
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
