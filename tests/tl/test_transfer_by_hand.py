"""``hr.tl.transfer`` on tiny hand-made pairs whose every transferred value is known."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import hiref as hr


def _pair():
    """A source of 3 cells, 3 genes, and a target of 4 cells: t0 <- s2, t2 <- s0, t3 <- s1, t1 unmatched."""
    source = ad.AnnData(
        X=np.arange(9, dtype=np.float32).reshape(3, 3),
        obs=pd.DataFrame(index=["s0", "s1", "s2"]),
        var=pd.DataFrame(index=["g0", "g1", "g2"]),
    )
    target = ad.AnnData(X=np.zeros((4, 3)), obs=pd.DataFrame(index=["t0", "t1", "t2", "t3"]))
    hr.tl.store_matching(source, target, np.array([2, 3, 0]), key_added="hand")
    return source, target


@pytest.mark.parametrize(("argument", "value"), [("genes", [1]), ("genes", ["g0", None]), ("obs", [("a",)])])
def test_names_that_are_not_strings_are_refused_by_name(argument, value):
    source, target = _pair()
    message = f"`{argument}` must be a string or a list of strings, got {value!r}."
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        hr.tl.transfer(source, target, key="hand", **{argument: value})
