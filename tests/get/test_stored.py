"""What a stored alignment survives (zarr) and what it refuses (reordered objects)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import hiref as hr


@pytest.fixture
def aligned(slices):
    a, b = slices
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    return a, b


@pytest.mark.parametrize("which", ["target", "source"])
def test_reordered_object_is_refused(aligned, which):
    a, b = aligned
    if which == "target":
        b = b[np.random.default_rng(1).permutation(b.n_obs)].copy()
    else:
        a = a[np.random.default_rng(1).permutation(a.n_obs)].copy()
    with pytest.raises(ValueError, match="reordered"):
        hr.tl.transfer(a, b, obs="region")
    with pytest.raises(ValueError, match="reordered"):
        hr.get.matching(a, b)
    with pytest.raises(ValueError, match="reordered"):
        hr.pl.alignment(a, b, show=False)


def test_reordered_target_refused_without_match_column(aligned):
    a, b = aligned
    del b.obs["hiref_match"]
    b = b[np.random.default_rng(1).permutation(b.n_obs)].copy()
    with pytest.raises(ValueError, match="adata_target"):
        hr.tl.transfer(a, b)


def test_unchanged_objects_still_transfer(aligned):
    a, b = aligned
    pred = hr.tl.transfer(a, b, obs="region")
    assert (pred.obs["hiref_source"].astype(str).to_numpy() == b.obs["hiref_match"].astype(str).to_numpy()).all()


@pytest.mark.filterwarnings("ignore:Writing zarr v2:UserWarning")
def test_alignment_survives_zarr(aligned, tmp_path):
    a, b = aligned
    a.write_zarr(tmp_path / "a.zarr")
    b.write_zarr(tmp_path / "b.zarr")
    a2, b2 = ad.read_zarr(tmp_path / "a.zarr"), ad.read_zarr(tmp_path / "b.zarr")
    m = hr.get.matching(a2, b2)
    assert np.array_equal(m.perm, a.uns["hiref"]["partner"])
    before = hr.tl.transfer(a, b, obs="region")
    after = hr.tl.transfer(a2, b2, obs="region")
    assert np.allclose(before.X.toarray(), after.X.toarray())
    assert (before.obs["region"].astype(str) == after.obs["region"].astype(str)).all()
    # The plots draw the same thing from the reloaded objects: the same points, lines and colours.
    for plot in (hr.pl.alignment, hr.pl.hierarchy):
        drawn = [_drawn(plot(x, y, show=False)) for x, y in ((a, b), (a2, b2))]
        assert drawn[0], plot.__name__
        assert len(drawn[0]) == len(drawn[1])
        for first, second in zip(*drawn, strict=True):
            np.testing.assert_array_equal(first, second)


def _drawn(axes):
    """The offsets, segments and colours of every collection of one or more Axes, as arrays."""
    out = []
    for ax in np.atleast_1d(axes):
        for collection in ax.collections:
            out.append(np.asarray(collection.get_offsets()))
            out += [np.asarray(seg) for seg in getattr(collection, "get_segments", list)()]
            out.append(np.asarray(collection.get_facecolors()))
    return out
