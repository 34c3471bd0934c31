from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import hiref as hr


def series(n_stages=3):
    out = []
    for t in range(n_stages):
        a, _ = hr.datasets.simulate_slices(n_obs=250 + 20 * t, n_genes=20, seed=t)
        a.obs_names = [f"t{t}_{name}" for name in a.obs_names]
        out.append(a)
    return out


def test_align_series_list_and_transitions():
    adatas = series()
    keys = hr.tl.align_series(adatas, use_rep="spatial", progress=False)
    assert keys == ["hiref_0_1", "hiref_1_2"]
    assert "hiref_0_1" in adatas[1].uns
    assert "hiref_1_2" in adatas[1].uns
    m = hr.get.matching(adatas[1], adatas[2], key="hiref_1_2")
    assert m.n_matched == adatas[1].n_obs
    tables = hr.tl.transitions(adatas, obs="region")
    assert list(tables) == ["0 -> 1", "1 -> 2"]
    assert np.allclose(tables["0 -> 1"].sum(1), 1.0)
    counts = hr.tl.transitions(adatas, obs="region", normalize=False)["1 -> 2"]
    assert counts.to_numpy().sum() == adatas[1].n_obs


def test_align_series_single_object():
    adatas = series()
    for t, a in enumerate(adatas):
        a.obs["stage"] = f"E{t}"
    joint = ad.concat(adatas)
    joint.obs["stage"] = pd.Categorical(joint.obs["stage"], categories=["E0", "E1", "E2"])
    hr.tl.align_series(joint, time_key="stage", use_rep="spatial", progress=False)
    info = joint.uns["hiref"]
    assert list(info["order"]) == ["E0", "E1", "E2"]
    assert set(info["pairs"]) == {"0", "1"}
    nxt = joint.obs["hiref_next"]
    assert nxt[joint.obs["stage"] == "E2"].isna().all()
    assert nxt[joint.obs["stage"] == "E0"].notna().all()
    targets = nxt[joint.obs["stage"] == "E1"].dropna().astype(str)
    assert (joint.obs.loc[targets, "stage"] == "E2").all()
    tables = hr.tl.transitions(joint, obs="region")
    assert list(tables) == ["E0 -> E1", "E1 -> E2"]


def test_align_series_errors():
    adatas = series(2)
    with pytest.raises(ValueError, match="at least two"):
        hr.tl.align_series(adatas[:1])
    with pytest.raises(ValueError, match="`time_key` is required"):
        hr.tl.align_series(adatas[0])
    with pytest.raises(KeyError, match="`time_key`"):
        hr.tl.align_series(adatas[0], time_key="nope")
    with pytest.raises(TypeError, match="`copy` cannot be passed"):
        hr.tl.align_series(adatas, copy=True)
    with pytest.raises(KeyError, match=r"run hr\.tl\.align_series first"):
        hr.tl.transitions(adatas[0], obs="region")


def test_align_series_draws_one_recorded_seed():
    adatas = series()
    hr.tl.align_series(adatas, use_rep="spatial", progress=False, random_state=None)
    seeds = {adatas[1].uns[key]["params"]["random_state"] for key in ("hiref_0_1", "hiref_1_2")}
    assert len(seeds) == 1
    assert isinstance(seeds.pop(), int)
    with pytest.raises(ValueError, match="`random_state` must be an int"):
        hr.tl.align_series(series(), use_rep="spatial", progress=False, random_state=-1)
