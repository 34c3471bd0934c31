"""The public API follows scanpy's conventions (ported from scanpy's test_sig_conventions)."""

from __future__ import annotations

import inspect
import re

import pytest

import hiref as hr

MODULES = {"pp": hr.pp, "tl": hr.tl, "get": hr.get}
FUNCTIONS = [(name, fn) for mod_name, mod in MODULES.items() for name in mod.__all__ for fn in [getattr(mod, name)]]


@pytest.mark.parametrize(("name", "fn"), FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_signature_conventions(name, fn):
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert 1 <= len(positional) <= 3, f"{name}: only the data objects are positional"
    for p in params:
        if p.name in ("copy", "inplace", "key_added", "random_state", "device", "progress"):
            assert p.kind is p.KEYWORD_ONLY, f"{name}: {p.name} must be keyword-only"
    assert fn.__doc__, f"{name} has no docstring"
    assert "Parameters" in fn.__doc__
    assert "Returns" in fn.__doc__
    # A shared-parameter placeholder stands alone on its line before filling.
    assert not re.search(r"^\s*\{\w+\}\s*$", fn.__doc__, re.MULTILINE), f"{name}: unfilled placeholder"


def test_top_level_exports():
    for name in ("solve", "Matching", "tl", "pp", "get", "datasets", "__version__"):
        assert hasattr(hr, name)
