from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.testing.compare import compare_images

import hiref as hr

IMAGES = Path(__file__).parent / "_images"
# RMS over 0-255 grey levels at dpi 40. The baselines are redrawn by this matplotlib (pinned in
# [test]), so a faithful redraw is at 0; a plot of a shuffled matching is far above (see
# test_a_wrong_matching_fails_the_image_check).
TOLERANCE = 3


@pytest.fixture(scope="module")
def aligned():
    a, b = hr.datasets.simulate_slices(n_obs=400, n_genes=20, rotation=20, missing=0.1, seed=3)
    hr.pp.register(a, b, n_sample=400, use_rep=None)
    hr.tl.align(a, b, use_rep={"spatial_registered": 1.0, "X": 0.3}, spatial_key="spatial_registered",
                leaf_size=32, progress=False)  # fmt: skip
    return a, b


def check_image(fig, name, tmp_path):
    """Compare with the stored baseline (HIREF_UPDATE_BASELINES=1 rewrites it)."""
    actual = tmp_path / f"{name}.png"
    fig.savefig(actual, dpi=40)
    expected = IMAGES / f"{name}.png"
    if os.environ.get("HIREF_UPDATE_BASELINES") or not expected.exists():
        if not os.environ.get("HIREF_UPDATE_BASELINES"):
            pytest.fail(f"no baseline {expected}; run with HIREF_UPDATE_BASELINES=1 to create it")
        expected.write_bytes(actual.read_bytes())
    result = compare_images(str(expected), str(actual), tol=TOLERANCE)
    assert result is None, result


def _segments(ax):
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lines) == 1
    return np.asarray(lines[0].get_segments())


def test_alignment(aligned, tmp_path):
    a, b = aligned
    ax = hr.pl.alignment(a, b, color="region", n_lines=50, names=("left", "right"), show=False)
    segments = _segments(ax)
    assert len(segments) == 50
    assert len([c for c in ax.collections if isinstance(c, PathCollection)]) >= 2
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == list(a.obs["region"].cat.categories)
    assert ax.get_aspect() == 1.0
    # the title names both slices, and the shift of the second is stated
    assert ax.get_title().startswith("left (left) and right (right): ")
    assert "right drawn shifted by" in ax.get_xlabel()
    overlay = hr.pl.alignment(a, b, layout="overlay", names=("s1", "s2"), n_lines=0, show=False)
    assert overlay.get_title().startswith("s1 and s2: ")
    assert "shifted" not in overlay.get_xlabel()
    check_image(ax.figure, "alignment", tmp_path)


def test_alignment_lines_join_stored_partners(aligned):
    a, b = aligned
    P1, P2 = a.obsm["spatial_registered"], b.obsm["spatial_registered"]
    for layout in ("overlay", "side"):
        segments = _segments(hr.pl.alignment(a, b, layout=layout, n_lines=80, show=False))
        starts = [np.flatnonzero((s == P1).all(1)) for s in segments[:, 0]]
        assert all(len(i) == 1 for i in starts)
        cells = np.concatenate(starts)
        partner = b.obs_names.get_indexer(a.obs["hiref_match"].iloc[cells].astype(str))
        shift = segments[:, 1] - P2[partner]
        assert np.allclose(shift[:, 1], 0)
        assert np.allclose(shift[:, 0], shift[0, 0])  # one shift for every line: 0 for "overlay"
        assert layout == "side" or np.allclose(shift, 0)


def test_alignment_lines_spread_evenly_on_many_cells():
    # 10^4 cells, 90 % of them in a corner covering 4 % of the area: lines must not all go there
    rng = np.random.default_rng(0)
    dense = rng.uniform(0, 0.2, size=(9000, 2))
    sparse = rng.uniform(0, 1, size=(1000, 2))
    P = np.concatenate([dense, sparse])
    a = ad.AnnData(np.zeros((len(P), 1), dtype=np.float32), obsm={"spatial": P})
    b = ad.AnnData(np.zeros((len(P), 1), dtype=np.float32), obsm={"spatial": P + 0.01})
    a.obs_names, b.obs_names = [f"a{i}" for i in range(len(P))], [f"b{i}" for i in range(len(P))]
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    ax = hr.pl.alignment(a, b, layout="overlay", n_lines=200, show=False)
    segments = _segments(ax)
    in_corner = (segments[:, 0] <= 0.2).all(1).mean()
    assert len(segments) == 200
    assert in_corner < 0.25  # a random sample would put about 90 % of the lines there
    lines = next(c for c in ax.collections if isinstance(c, LineCollection))
    assert lines.get_linewidths()[0] < 0.5
    assert lines.get_alpha() < 0.5


def test_alignment_keywords_win_over_the_plot_s_own(aligned):
    a, b = aligned
    ax = hr.pl.alignment(a, b, color="hiref_confidence", vmin=0, vmax=1, linewidths=0.5, marker="s", show=False)
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert all(p.get_clim() == (0, 1) for p in points)
    assert all(p.get_linewidths()[0] == 0.5 for p in points)
    ax = hr.pl.alignment(a, b, color="gene1", vmax=2.0, s=3, show=False)
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert all(p.get_clim()[1] == 2.0 and p.get_sizes()[0] == 3 for p in points)
    from matplotlib.colors import LogNorm

    ax = hr.pl.alignment(a, b, color="gene1", norm=LogNorm(0.1, 10), show=False)
    assert next(c for c in ax.collections if isinstance(c, PathCollection)).get_clim() == (0.1, 10)
    with pytest.raises(TypeError, match="`color=`"):
        hr.pl.alignment(a, b, c="red", show=False)
    ax = hr.pl.displacement(a, b, n_arrows=20, width=0.01, cmap="viridis", show=False)
    quiver = next(c for c in ax.collections if type(c).__name__ == "Quiver")
    assert quiver.width == 0.01
    axes = hr.pl.hierarchy(a, b, level=1, linewidths=1.0, show=False)
    assert axes[0].collections[0].get_linewidths()[0] == 1.0


def test_clipped_colour_scale_says_so(aligned):
    a, b = aligned
    ax = hr.pl.alignment(a, b, color="gene1", show=False)
    values = np.concatenate([np.asarray(x[:, "gene1"].X.todense()).ravel() for x in (a, b)])
    lo, hi = np.percentile(values, [1, 99])
    bar = ax.figure.axes[-1]
    label = bar.get_ylabel()
    assert "clipped at the 1st-99th percentile" in label
    assert (values > hi).sum() > 0
    assert f"{(values > hi).sum():,} above {hi:.3g}" in label
    assert ((values < lo).sum() > 0) == ("below" in label)
    assert ax.collections[0].get_clim() == pytest.approx((lo, hi))
    # a share (the confidence) keeps its whole range: nothing clipped, nothing to say
    ax = hr.pl.alignment(a, b, color="hiref_confidence", show=False)
    assert ax.collections[0].get_clim() == (0.0, 1.0)
    assert "clipped" not in ax.figure.axes[-1].get_ylabel()
    # the user's limits are followed, and what they clip is counted too
    ax = hr.pl.alignment(a, b, color="gene1", vmin=0, vmax=float(np.median(values)), show=False)
    assert "clipped at vmin/vmax" in ax.figure.axes[-1].get_ylabel()


def test_alignment_overlay_gene_and_given_axes(aligned, tmp_path):
    a, b = aligned
    fig, ax = plt.subplots()
    out = hr.pl.alignment(a, b, color="gene1", layout="overlay", ax=ax, save=tmp_path / "x.png")
    assert out is ax  # ax given, show=None: not shown, returned
    assert (tmp_path / "x.png").exists()
    assert len(fig.axes) == 2  # the colour bar
    with pytest.raises(KeyError, match="neither a column"):
        hr.pl.alignment(a, b, color="nope", show=False)
    with pytest.raises(ValueError, match="`layout`"):
        hr.pl.alignment(a, b, layout="stacked", show=False)


def test_hierarchy(aligned, tmp_path):
    a, b = aligned
    axes = hr.pl.hierarchy(a, b, level=2, names=("left", "right"), show=False)
    assert len(axes) == 2
    assert axes[0].get_title().startswith("left: ")
    assert axes[1].get_title().startswith("right: ")
    assert "after level 2" in axes[0].get_title()
    # each panel shows its own slice in its own coordinates
    for ax, adata in zip(axes, (a, b), strict=True):
        assert np.allclose(ax.collections[0].get_offsets(), adata.obsm["spatial_registered"][:, :2])
    check_image(axes[0].figure, "hierarchy", tmp_path)
    with pytest.raises(ValueError, match="`level` must be an int"):
        hr.pl.hierarchy(a, b, level=99, show=False)


def test_hierarchy_counts_pairs_that_cross_co_clusters(aligned):
    a, b = aligned
    level = a.obsm["hiref_labels"].shape[1]
    partner = a.uns["hiref"]["partner"]
    matched = partner >= 0
    labels1, labels2 = a.obsm["hiref_labels"][:, level - 1], b.obsm["hiref_labels"][:, level - 1]
    crossing = int((labels1[matched] != labels2[partner[matched]]).sum())
    assert crossing > 0  # the exact finish moved some pairs across the deepest co-clusters
    title = hr.pl.hierarchy(a, b, level=level, show=False)[0].get_title()
    assert f"{crossing:,} of {int(matched.sum()):,} matched pairs cross co-clusters" in title
    assert "never crosses" not in hr.pl.hierarchy.__doc__


def test_hierarchy_of_a_single_leaf_says_so(slices):
    a, b = slices
    hr.tl.align(a, b, use_rep="spatial", leaf_size=1024, progress=False)
    with pytest.raises(ValueError, match=r"no levels.*smaller `leaf_size`"):
        hr.pl.hierarchy(a, b, show=False)


def test_level_costs(aligned, tmp_path):
    a, _ = aligned
    ax = hr.pl.level_costs(a, show=False)
    y = ax.lines[0].get_ydata()
    assert np.allclose(y, a.uns["hiref"]["level_costs"][:-1])
    assert ax.get_yscale() == "log"
    check_image(ax.figure, "level_costs", tmp_path)


def test_displacement(aligned, tmp_path):
    a, b = aligned
    ax = hr.pl.displacement(a, b, n_arrows=80, show=False)
    quiver = next(c for c in ax.collections if type(c).__name__ == "Quiver")
    assert quiver.N == 80
    field = hr.pl.displacement(a, b, grid=8, show=False)
    assert next(c for c in field.collections if type(c).__name__ == "Quiver").N <= 64
    check_image(ax.figure, "displacement", tmp_path)


def test_transfer_plot(aligned, tmp_path):
    a, b = aligned
    pred = hr.tl.transfer(a, b, spatial_key="spatial_registered")
    axes = hr.pl.transfer(pred, b, genes=["gene0", "gene3"], spatial_key="spatial_registered", show=False)
    assert len(axes) == 4
    cosine = hr.tl.cosine_similarity(pred, b, genes=["gene0", "gene3"], bins=75, spatial_key="spatial_registered")
    for ax, gene in ((axes[0], "gene0"), (axes[2], "gene3")):
        assert f"(cosine {cosine.loc[gene, 'cosine_similarity']:.3f})" in ax.get_title()
    binned = hr.pl.transfer(pred, b, genes=["gene0", "gene3"], bins=12, spatial_key="spatial_registered", show=False)
    assert len(binned[0].images) == 1
    assert "clipped at the 99th percentile" in binned[0].figure.axes[-1].get_ylabel()
    cosine12 = hr.tl.cosine_similarity(pred, b, genes=["gene0", "gene3"], bins=12, spatial_key="spatial_registered")
    for ax, gene in ((binned[0], "gene0"), (binned[2], "gene3")):
        assert f"(cosine {cosine12.loc[gene, 'cosine_similarity']:.3f})" in ax.get_title()
    check_image(binned[0].figure, "transfer", tmp_path)
    limited = hr.pl.transfer(pred, b, genes="gene0", vmin=0.5, vmax=1.0, spatial_key="spatial_registered", show=False)
    assert limited[0].collections[0].get_clim() == (0.5, 1.0)


def test_a_wrong_matching_fails_the_image_check(aligned, tmp_path):
    """The image check can fail: the same plots of a shuffled matching are far from the baselines."""
    a, b = aligned
    a, b = a.copy(), b.copy()
    perm = np.full(a.n_obs, -1)
    matched = np.random.default_rng(0).choice(a.n_obs, min(a.n_obs, b.n_obs), replace=False)
    perm[matched] = np.random.default_rng(1).permutation(b.n_obs)[: len(matched)]
    hr.tl.store_matching(a, b, perm, spatial_key="spatial_registered")
    pred = hr.tl.transfer(a, b, spatial_key="spatial_registered")
    transfer = hr.pl.transfer(pred, b, genes=["gene0", "gene3"], bins=12, spatial_key="spatial_registered", show=False)
    drawings = {
        "alignment": hr.pl.alignment(a, b, color="region", n_lines=50, names=("left", "right"), show=False).figure,
        "transfer": transfer[0].figure,
    }
    for name, fig in drawings.items():
        actual = tmp_path / f"{name}.png"
        fig.savefig(actual, dpi=40)
        rms = float(compare_images(str(IMAGES / f"{name}.png"), str(actual), tol=0, in_decorator=True)["rms"])
        assert rms > 3 * TOLERANCE, (name, rms)


def test_transitions_plot(tmp_path):
    adatas = []
    for t in range(3):
        x, _ = hr.datasets.simulate_slices(n_obs=200, n_genes=10, n_regions=4, seed=t)
        x.obs_names = [f"t{t}_{n}" for n in x.obs_names]
        adatas.append(x)
    hr.tl.align_series(adatas, use_rep="spatial", leaf_size=32, progress=False)
    axes = hr.pl.transitions(adatas, obs="region", show=False)
    assert len(axes) == 2
    ax = hr.pl.transitions(adatas, obs="region", pair="1 -> 2", show=False)
    assert ax.get_title() == "1 -> 2"
    assert ax.images[0].get_array().shape == (4, 4)
    check_image(ax.figure, "transitions", tmp_path)
    with pytest.raises(KeyError, match="`pair` must be one of"):
        hr.pl.transitions(adatas, obs="region", pair="5 -> 6", show=False)


def test_plots_need_an_alignment():
    a, b = hr.datasets.simulate_slices(n_obs=50, n_genes=5, seed=0)
    for fn in (hr.pl.alignment, hr.pl.hierarchy, hr.pl.displacement):
        with pytest.raises(KeyError, match=r"run hr\.tl\.align first"):
            fn(a, b, show=False)
    with pytest.raises(KeyError, match=r"run hr\.tl\.align first"):
        hr.pl.level_costs(a, show=False)


@pytest.fixture(scope="module")
def stacked():
    sections = []
    for s in range(3):
        a, _ = hr.datasets.simulate_slices(n_obs=150, n_genes=10, n_regions=4, rotation=25 * s, seed=s)
        a.obs_names = [f"s{s}_{n}" for n in a.obs_names]
        sections.append(a)
    keys = hr.tl.align_series(sections, use_rep="spatial", leaf_size=32, progress=False)
    hr.tl.trace(sections, keys=keys)
    hr.tl.stack(sections, spacing=0.4, register_options={"use_rep": None, "n_sample": 150})
    return sections


def test_stack_3d(stacked, tmp_path):
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    ax = hr.pl.stack(stacked, color="region", trace_key="hiref_trace", n_lines=20, show=False)
    assert ax.name == "3d"
    assert len([c for c in ax.collections if isinstance(c, PathCollection)]) == 3
    assert all(c.get_rasterized() for c in ax.collections if isinstance(c, PathCollection))
    lines = [c for c in ax.collections if isinstance(c, Line3DCollection)]
    assert len(lines) == 1
    ax.figure.canvas.draw()  # a 3-D collection holds its projected segments once drawn
    assert 20 <= len(lines[0].get_segments()) <= 2 * 20
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == list(stacked[0].obs["region"].cat.categories)
    check_image(ax.figure, "stack_3d", tmp_path)
    gene = hr.pl.stack(stacked, color="gene1", show=False)
    assert len(gene.figure.axes) == 2  # the colour bar
    with pytest.raises(ValueError, match="3-D Axes"):
        hr.pl.stack(stacked, ax=plt.subplots()[1], show=False)
    with pytest.raises(KeyError, match=r"run hr\.tl\.stack first"):
        hr.pl.stack(stacked, basis="nope", show=False)
    with pytest.raises(KeyError, match=r"run hr\.tl\.trace first"):
        hr.pl.stack(stacked, trace_key="nope", show=False)
    few = hr.pl.stack(stacked, trace_key="hiref_trace", trace_cells=stacked[0].obs_names[:3], n_lines=50, show=False)
    few.figure.canvas.draw()
    drawn = next(c for c in few.collections if isinstance(c, Line3DCollection)).get_segments()
    assert 3 <= len(drawn) <= 6
    with pytest.raises(KeyError, match="`trace_cells`"):
        hr.pl.stack(stacked, trace_key="hiref_trace", trace_cells=["nope"], show=False)


def test_stack_panels(stacked, tmp_path):
    axes = hr.pl.stack(stacked, kind="panels", color="region", names=["a", "b", "c"], save=tmp_path / "p.png",
                       show=False)  # fmt: skip
    assert (tmp_path / "p.png").exists()
    assert [a.get_title() for a in axes] == ["a", "b", "c"]
    assert all(a.get_xlim() == axes[0].get_xlim() for a in axes)  # one frame
    assert axes[0].get_aspect() == 1.0
    check_image(axes[0].figure, "stack_panels", tmp_path)
    _, given = plt.subplots(1, 3)
    assert hr.pl.stack(stacked, kind="panels", ax=list(given)) == list(given)
    with pytest.raises(ValueError, match="one Axes per section"):
        hr.pl.stack(stacked, kind="panels", ax=list(given[:2]), show=False)
    with pytest.raises(ValueError, match="`kind`"):
        hr.pl.stack(stacked, kind="flat", show=False)


@pytest.mark.parametrize(("n", "palette"), [(12, "default_20"), (25, "default_28"), (60, "default_102")])
def test_many_categories_get_scanpy_s_palettes(n, palette):
    from scanpy.plotting import palettes

    from hiref.pl._utils import category_colors

    a = ad.AnnData(np.zeros((n, 1), dtype=np.float32))
    a.obs["cat"] = pd.Categorical([f"c{i}" for i in range(n)])
    colours = category_colors([a], "cat")
    assert len(set(colours.values())) == n  # no colour used twice
    assert list(colours.values()) == list(getattr(palettes, palette)[:n])
