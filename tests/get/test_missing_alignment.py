"""What the readers say when the alignment asked for is not there: the key, what to run, what is there."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import hiref as hr


def _pair():
    source = ad.AnnData(X=np.eye(3), obs=pd.DataFrame(index=["s0", "s1", "s2"]))
    target = ad.AnnData(X=np.eye(3), obs=pd.DataFrame(index=["t0", "t1", "t2"]))
    return source, target


def test_missing_alignment_names_the_key_the_fix_and_the_alignments_found():
    source, target = _pair()
    with pytest.raises(KeyError) as err:
        hr.get.matching(source, target, key="nope")
    assert err.value.args[0] == "`adata1` has no alignment under key 'nope': run hr.tl.align first."
    for key in ("two", "one"):
        hr.tl.store_matching(source, target, np.array([2, 0, 1]), key_added=key)
    source.uns["other"] = {"not": "an alignment"}
    with pytest.raises(KeyError) as err:
        hr.tl.transfer(source, target, key="nope")
    found = "(alignments found: ['one', 'two'])"
    assert err.value.args[0] == f"`adata_target` has no alignment under key 'nope': run hr.tl.align first {found}."
