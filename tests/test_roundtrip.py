"""Everything hiref stores survives write_h5ad/read_h5ad and write_zarr/read_zarr, and reads back the same."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import hiref as hr
from hiref._anndata import str_array
from hiref.get._transfer import bin_grid, matched_mask

pytestmark = pytest.mark.filterwarnings("ignore:Writing zarr v2:UserWarning")


def roundtrip(adata: ad.AnnData, path, fmt: str) -> ad.AnnData:
    if fmt == "h5ad":
        adata.write_h5ad(path / "x.h5ad")
        return ad.read_h5ad(path / "x.h5ad")
    adata.write_zarr(path / "x.zarr")
    return ad.read_zarr(path / "x.zarr")


def assert_same(before: object, after: object, where: str = "uns") -> None:
    """Equal values, with arrays compared by content and strings whatever their numpy dtype."""
    if isinstance(before, dict):
        assert isinstance(after, dict), where
        assert set(before) == set(after), where
        for k in before:
            assert_same(before[k], after[k], f"{where}[{k!r}]")
    elif isinstance(before, np.ndarray | list | tuple):
        b, a = np.asarray(before), np.asarray(after)
        if b.dtype.kind in "UOS" or a.dtype.kind in "UOST":
            assert np.array_equal(str_array(b), str_array(a)), where
        else:
            assert np.array_equal(b, a, equal_nan=b.dtype.kind == "f"), where
    elif isinstance(before, float) and np.isnan(before):
        assert np.isnan(after), where
    else:
        assert before == after, where
        assert type(np.asarray(before).item()) is type(np.asarray(after).item()), where


def assert_same_adata(before: ad.AnnData, after: ad.AnnData) -> None:
    assert_same(dict(before.uns), dict(after.uns))
    assert set(before.obsm) == set(after.obsm)
    for k in before.obsm:
        np.testing.assert_array_equal(np.asarray(before.obsm[k]), np.asarray(after.obsm[k]))
    pd.testing.assert_frame_equal(before.obs, after.obs, check_categorical=False)


def pair(tmp_path, a, b, fmt):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return roundtrip(a, tmp_path / "a", fmt), roundtrip(b, tmp_path / "b", fmt)


@pytest.fixture(scope="module")
def registered_and_aligned():
    a, b = hr.datasets.simulate_slices(n_obs=300, n_genes=15, rotation=25, missing=0.1, seed=2)
    hr.pp.register(a, b, n_sample=300)
    hr.tl.align(a, b, use_rep={"spatial_registered": 1.0, "X": 0.3}, spatial_key="spatial_registered",
                leaf_size=32, progress=False)  # fmt: skip
    return a, b


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_align_and_register_roundtrip(registered_and_aligned, tmp_path, fmt):
    a, b = registered_and_aligned
    a2, b2 = pair(tmp_path, a, b, fmt)
    assert_same_adata(a, a2)
    assert_same_adata(b, b2)
    m1, m2 = hr.get.matching(a, b), hr.get.matching(a2, b2)
    np.testing.assert_array_equal(m1.perm, m2.perm)
    assert (m1.cost, m1.schedule, m1.level_costs, m1.cost_name) == (m2.cost, m2.schedule, m2.level_costs, m2.cost_name)
    for x, y in zip(m1.labels_x + m1.labels_y, m2.labels_x + m2.labels_y, strict=True):
        np.testing.assert_array_equal(x, y)
    # What the plots draw.
    seg1 = hr.pl.alignment(a, b, n_lines=40, show=False).collections[-1].get_segments()
    seg2 = hr.pl.alignment(a2, b2, n_lines=40, show=False).collections[-1].get_segments()
    np.testing.assert_array_equal(np.asarray(seg1), np.asarray(seg2))
    np.testing.assert_array_equal(hr.pl.level_costs(a, show=False).lines[0].get_ydata(),
                                  hr.pl.level_costs(a2, show=False).lines[0].get_ydata())  # fmt: skip
    assert hr.pl.level_costs(a2, show=False).get_ylabel() == hr.pl.level_costs(a, show=False).get_ylabel()
    c1 = [c.get_facecolors() for c in hr.pl.hierarchy(a, b, level=2, show=False)[0].collections]
    c2 = [c.get_facecolors() for c in hr.pl.hierarchy(a2, b2, level=2, show=False)[0].collections]
    np.testing.assert_array_equal(c1[0], c2[0])
    # The registration.
    assert b2.uns["spatial_registered"]["decision"] == b.uns["spatial_registered"]["decision"]
    np.testing.assert_array_equal(b2.obsm["spatial_registered"], b.obsm["spatial_registered"])


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_transfer_and_bins_roundtrip(registered_and_aligned, tmp_path, fmt):
    a, b = registered_and_aligned
    pred = hr.tl.transfer(b, a, obs="region", spatial_key="spatial_registered")  # a is larger: some unmatched
    binned = hr.tl.bin_spatial(pred, bins=6, spatial_key="spatial_registered", mask=matched_mask(pred))
    pred2, binned2 = pair(tmp_path, pred, binned, fmt)
    assert_same_adata(pred, pred2)
    assert_same_adata(binned, binned2)
    np.testing.assert_array_equal(matched_mask(pred), matched_mask(pred2))
    np.testing.assert_array_equal(bin_grid(binned, "gene0"), bin_grid(binned2, "gene0"))
    genes = ["gene0", "gene1"]
    before = hr.tl.cosine_similarity(pred, a, genes=genes, bins=6, spatial_key="spatial_registered")
    after = hr.tl.cosine_similarity(pred2, a, genes=genes, bins=6, spatial_key="spatial_registered")
    pd.testing.assert_frame_equal(before, after)
    (tmp_path / "pair").mkdir()
    a2, b2 = pair(tmp_path / "pair", a, b, fmt)
    moved = hr.tl.transfer(b2, a2, obs="region", spatial_key="spatial_registered")
    assert_same_adata(pred, moved)


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_series_roundtrip(tmp_path, fmt):
    adatas = []
    for t in range(3):
        x, _ = hr.datasets.simulate_slices(n_obs=120, n_genes=10, n_regions=3, seed=t)
        x.obs_names = [f"t{t}_{n}" for n in x.obs_names]
        x.obs["time"] = pd.Categorical([f"day{t}"] * x.n_obs)
        adatas.append(x)
    joint = ad.concat(adatas)
    hr.tl.align_series(adatas, use_rep="spatial", leaf_size=32, progress=False)
    hr.tl.align_series(joint, time_key="time", use_rep="spatial", leaf_size=32, progress=False)
    folder = tmp_path / "list"
    folder.mkdir()
    back = []
    for i, x in enumerate(adatas):
        (folder / str(i)).mkdir()
        back.append(roundtrip(x, folder / str(i), fmt))
        assert_same_adata(x, back[-1])
    joint2 = roundtrip(joint, tmp_path, fmt)
    assert_same_adata(joint, joint2)
    for before, after in ((adatas, back), (joint, joint2)):
        t1 = hr.tl.transitions(before, obs="region")
        t2 = hr.tl.transitions(after, obs="region")
        assert list(t1) == list(t2)
        for k in t1:
            pd.testing.assert_frame_equal(t1[k], t2[k])
    image1 = hr.pl.transitions(joint, obs="region", pair="day0 -> day1", show=False).images[0].get_array()
    image2 = hr.pl.transitions(joint2, obs="region", pair="day0 -> day1", show=False).images[0].get_array()
    np.testing.assert_array_equal(image1, image2)


def test_alignment_written_the_old_way_still_reads(registered_and_aligned):
    """Before partner names were stored once, they were also in .uns[key]["partner_names"]."""
    a, b = (x.copy() for x in registered_and_aligned)
    expected = hr.get.matching(a, b).perm
    for x, y in ((a, b), (b, a)):
        partner = x.uns["hiref"]["partner"]
        x.uns["hiref"]["partner_names"] = np.where(partner >= 0, y.obs_names.to_numpy()[np.maximum(partner, 0)], "")
        del x.obs["hiref_match"]
    np.testing.assert_array_equal(hr.get.matching(a, b).perm, expected)
    with pytest.raises(ValueError, match="reordered"):
        hr.get.matching(a[::-1].copy(), b)
