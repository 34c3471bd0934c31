"""Property-based checks of the AnnData API's input validation (hypothesis).

Random sizes, NaN placement, obs/var name collisions, representations and options: ``hr.tl.align``
and ``hr.tl.transfer`` either work or raise a ValueError/TypeError/KeyError whose message names an
argument in backticks, and a failure (or ``copy=True``) leaves the inputs unchanged.
"""

from __future__ import annotations

import re
import warnings

import anndata as ad
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import hiref as hr

NAMED = re.compile(r"`[A-Za-z_][^`]*`")
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def rare(draw) -> bool:
    """True about one time in eight: most examples carry at most one fault."""
    return draw(st.integers(0, 7)) == 0


@st.composite
def adata(draw, prefix: str):
    n = draw(st.sampled_from([0, *range(2, 31)]))
    g = draw(st.sampled_from([0, *range(3, 7)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    X = rng.poisson(2.0, size=(n, g)).astype(np.float32)
    obs_names = [f"{draw(st.sampled_from([prefix, 'c']))}{i}" for i in range(n)]
    if n > 1 and rare(draw):
        obs_names[-1] = obs_names[0]  # duplicated obs_names
    var_names = [f"g{i}" for i in range(g)]
    if g > 1 and rare(draw):
        var_names[-1] = var_names[0]  # duplicated var_names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = ad.AnnData(
            X=X,
            obs=pd.DataFrame({"label": rng.choice(["a", "b"], n)}, index=obs_names),
            var=pd.DataFrame(index=var_names),
        )
    spatial = rng.normal(size=(n, 2 if not rare(draw) else draw(st.sampled_from([1, 3]))))
    if spatial.size and rare(draw):
        spatial.flat[draw(st.integers(0, spatial.size - 1))] = np.nan
    out.obsm["spatial"] = spatial
    if rare(draw):
        out.uns["spatial"] = {"library": {"images": {}}}  # what squidpy keeps there
    return out


OPTIONS = st.fixed_dictionaries(
    {
        "use_rep": st.sampled_from(
            ["spatial", "spatial", "X", "X_pca", "X_pca", "nope", {"spatial": 1.0, "X": 0.5}, {"spatial": -1.0}]
        ),
        "key_added": st.sampled_from(["hiref", "hiref", "hiref", "spatial", ""]),
    },
    optional={
        "n_pcs": st.sampled_from([0, 2, 2.5]),
        "random_state": st.sampled_from([-1, 0, None, 2**40]),
        "refine": st.sampled_from([False, "no"]),
        "spatial_key": st.sampled_from([None, "spatial", "other"]),
    },
)


def _state(a: ad.AnnData) -> tuple:
    X = np.asarray(a.X)
    return (
        a.obs.copy(),
        list(a.obs_names),
        list(a.var_names),
        X.copy(),
        {k: np.asarray(v).copy() for k, v in a.obsm.items()},
        sorted(a.uns.keys()),
    )


def _same(before: tuple, after: tuple) -> bool:
    obs_a, on_a, vn_a, X_a, obsm_a, uns_a = before
    obs_b, on_b, vn_b, X_b, obsm_b, uns_b = after
    return (
        obs_a.equals(obs_b)
        and on_a == on_b
        and vn_a == vn_b
        and np.array_equal(X_a, X_b)
        and obsm_a.keys() == obsm_b.keys()
        and all(np.array_equal(obsm_a[k], obsm_b[k], equal_nan=True) for k in obsm_a)
        and uns_a == uns_b
    )


@SETTINGS
@given(a=adata("a"), b=adata("b"), options=OPTIONS, copy=st.booleans())
def test_align_works_or_names_the_argument_and_keeps_inputs(a, b, options, copy):
    before = (_state(a), _state(b))
    error = out = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. anndata on duplicated names
            out = hr.tl.align(a, b, progress=False, copy=copy, **options)
    except (ValueError, TypeError, KeyError) as err:
        error = err
    event("error" if error is not None else "aligned")
    if error is not None:
        text = str(error.args[0]) if isinstance(error, KeyError) else str(error)
        assert NAMED.search(text), f"{type(error).__name__} names no argument: {text}"
        assert _same(before[0], _state(a))
        assert _same(before[1], _state(b))
        return
    key = options["key_added"]
    if copy:
        assert _same(before[0], _state(a))
        assert _same(before[1], _state(b))
        a, b = out
    partner = b.uns[key]["partner"]
    assert len(partner) == b.n_obs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # anndata: the source's var_names may repeat
        pred = hr.tl.transfer(a, b, key=key, obs="label")
    assert list(pred.obs_names) == list(b.obs_names)
    assert pred.obs["label"].isna().sum() == (partner < 0).sum()
