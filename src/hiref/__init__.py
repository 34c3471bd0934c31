"""hiref: one-to-one alignment of datasets by Hierarchical Refinement optimal transport."""

from __future__ import annotations

import sys as _sys

try:
    from . import datasets, engine, get, pl, pp, tl
    from .engine import Matching, SolveOptions, rank_schedule, solve
except KeyboardInterrupt:
    # Ctrl-C while the `hiref` command starts (importing torch takes seconds): one line, as the
    # command reports any other interruption, instead of a traceback through torch's imports.
    if _sys.argv and _sys.argv[0].replace("\\", "/").rsplit("/", 1)[-1] in ("hiref", "hiref.exe"):
        _sys.stderr.write("hiref: interrupted\n")
        raise SystemExit(130) from None
    raise

from ._version import __version__

__all__ = [
    "Matching",
    "SolveOptions",
    "__version__",
    "datasets",
    "engine",
    "get",
    "pl",
    "pp",
    "rank_schedule",
    "solve",
    "tl",
]
