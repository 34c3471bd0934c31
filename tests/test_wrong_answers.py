"""Every consumer of a matching has a check that passes on hiref's answer and fails on a wrong one.

A simulated pair (and a third section for tracing) with known true partners. Each consumer's
result is scored by one number (higher is better), measured through four matchings stored the
same way: hiref's, the true one, a random one (chance) and the one under test. The check asks the
matching under test to close 80 % of the way from chance to the truth. Then a wrong answer, a
random matching or one with half of its pairs mixed up, stored in place of hiref's (or returned by
the engine itself, through the ``wrong_solver`` fixture), must fail that check.
"""

from __future__ import annotations

import contextlib
import io

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial import cKDTree

import hiref as hr
from hiref.cli import main

from helpers import wrong_perm

STORED = ["transfer", "bin", "cosine", "label_agreement", "coupling", "trace"]
SHARE = 0.8  # of the way from chance to the truth that a right answer must close


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _truth(source, target):
    """The true partner in ``target`` of every cell of ``source`` (``-1``: none), from ``target.obs['true_match']``."""
    perm = np.full(source.n_obs, -1, dtype=np.int64)
    perm[source.obs_names.get_indexer(target.obs["true_match"])] = np.arange(target.n_obs)
    return perm


@pytest.fixture(scope="module")
def world():
    """Sections a, b (b lacks 10 % of a's cells) and c (b's cells reordered, moved a little), each pair aligned."""
    a, b = hr.datasets.simulate_slices(n_obs=400, n_genes=20, rotation=0, translation=(0, 0), missing=0.1, seed=0)
    rng = np.random.default_rng(0)
    order = rng.permutation(b.n_obs)
    c = b[order].copy()
    c.obs_names = [f"c_{name}" for name in c.obs_names]
    c.obs["true_match"] = b.obs_names[order]
    c.obsm["spatial"] = c.obsm["spatial"] + rng.normal(0, 0.5, c.obsm["spatial"].shape)
    hr.tl.align(a, b, use_rep="spatial", key_added="hiref_ab", progress=False)
    hr.tl.align(b, c, use_rep="spatial", key_added="hiref_bc", progress=False)
    for first, second, pair in ((a, b, "ab"), (b, c, "bc")):
        truth = _truth(first, second)
        hr.tl.store_matching(first, second, truth, key_added=f"truth_{pair}")
        hr.tl.store_matching(first, second, wrong_perm(truth, "random", seed=7), key_added=f"chance_{pair}")
    return a, b, c


def score(consumer, a, b, c, name):
    """One number for the result of ``consumer`` through the matchings stored as ``{name}_ab`` (and ``_bc``)."""
    key = f"{name}_ab"
    if consumer == "trace":
        table = hr.tl.trace([a, b, c], start=2, sections=0, keys=[key, f"{name}_bc"], inplace=False)
        partner = table["partner_index"].to_numpy()
        true_b = b.obs_names.get_indexer(c.obs["true_match"])
        true_a = a.obs_names.get_indexer(b.obs["true_match"])[true_b]
        found = partner >= 0
        return -np.median(np.linalg.norm(a.obsm["spatial"][partner[found]] - a.obsm["spatial"][true_a[found]], axis=1))
    if consumer == "coupling":
        P = hr.get.coupling(a, b, key=key).tocoo()
        distance = np.linalg.norm(a.obsm["spatial"][P.row] - b.obsm["spatial"][P.col], axis=1)
        return -float((P.data * distance).sum() / P.data.sum())
    if consumer == "label_agreement":
        return hr.tl.label_agreement(a, b, obs="region", key=key).loc["overall", "agreement"]
    pred = hr.tl.transfer(a, b, key=key)
    if consumer == "transfer":
        return _expression_score(pred, b)
    if consumer == "cosine":
        return hr.tl.cosine_similarity(pred, b, genes=list(b.var_names), bins=8)["cosine_similarity"].mean()
    if consumer == "bin":
        low, high = b.obsm["spatial"].min(0), b.obsm["spatial"].max(0) + 1e-9
        extent = (low[0], high[0], low[1], high[1])
        got = hr.tl.bin_spatial(pred, bins=6, extent=extent)
        want = hr.tl.bin_spatial(b, bins=6, extent=extent)
        assert list(got.obs_names) == list(want.obs_names)
        return -float(np.abs(_dense(got.X) - _dense(want.X)).mean())
    raise AssertionError(consumer)


def _expression_score(pred, truth):
    """Mean over genes of the correlation, across cells, of predicted and measured expression."""
    P, T = _dense(pred.X), _dense(truth[:, pred.var_names].X)
    P, T = P - P.mean(0), T - T.mean(0)
    return float(((P * T).sum(0) / np.sqrt((P**2).sum(0) * (T**2).sum(0))).mean())


def closes_the_gap(got, truth, chance):
    """The check every consumer's result must pass: ``SHARE`` of the way from chance to the truth."""
    assert truth > chance  # the references themselves tell right from wrong
    return got - chance >= SHARE * (truth - chance)


def scores(consumer, world, name):
    """The consumer's score through matching ``name``, through the true matching, and through a random one."""
    return tuple(score(consumer, *world, n) for n in (name, "truth", "chance"))


@pytest.mark.parametrize("consumer", STORED)
def test_consumer_check_passes_on_hiref(world, consumer):
    assert closes_the_gap(*scores(consumer, world, "hiref"))


@pytest.mark.parametrize("kind", ["random", "half"])
@pytest.mark.parametrize("consumer", STORED)
def test_consumer_check_catches_a_wrong_matching(world, consumer, kind):
    a, b, c = (x.copy() for x in world)
    for first, second, pair in ((a, b, "ab"), (b, c, "bc")):
        stored = first.uns[f"hiref_{pair}"]["partner"]
        hr.tl.store_matching(first, second, wrong_perm(stored, kind, seed=3), key_added=f"wrong_{pair}")
    assert not closes_the_gap(*scores(consumer, (a, b, c), "wrong"))


# ----------------------------------------------------------- consumers that call the engine themselves


def _stack_distance():
    """Mean distance of b's stacked cells from their true partners in a's frame, in cell spacings."""
    a, b = hr.datasets.simulate_slices(n_obs=300, n_genes=20, rotation=40, deformation=0, seed=4)
    hr.tl.stack([a, b], register_options={"use_rep": None, "n_sample": 300})
    true = a.obsm["spatial_3d"][a.obs_names.get_indexer(b.obs["true_match"]), :2]
    spacing = np.median(cKDTree(a.obsm["spatial"]).query(a.obsm["spatial"], k=2)[0][:, 1])
    return np.linalg.norm(b.obsm["spatial_3d"][:, :2] - true, axis=1).mean() / spacing


def test_stack_check_passes():
    assert _stack_distance() < 1.0


# Only a fully random matching: the rigid fit averages over all pairs, so a matching half right still
# gives the right motion (0.36 spacings off, measured), which is the registration being robust, not wrong.
@pytest.mark.parametrize("wrong_solver", ["random"], indirect=True)
def test_stack_check_catches_a_wrong_solver(wrong_solver):
    assert _stack_distance() >= 1.0


def _cli_scores(tmp_path, world):
    """Label agreement and transferred-expression score of ``hiref align`` then ``hiref transfer`` on files."""
    a, b, _ = world
    a, b = a.copy(), b.copy()
    for adata in (a, b):
        adata.uns = {}
        for col in [c for c in adata.obs.columns if c.startswith(("hiref", "truth", "chance"))]:
            del adata.obs[col]
        for key in [k for k in adata.obsm if k != "spatial"]:
            del adata.obsm[key]
    a.write_h5ad(tmp_path / "a.h5ad")
    b.write_h5ad(tmp_path / "b.h5ad")
    out = tmp_path / "out" / "a.h5ad"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["align", str(tmp_path / "a.h5ad"), str(tmp_path / "b.h5ad"), "--out", str(out),
                     "--use-rep", "spatial", "--quiet"]) == 0  # fmt: skip
        assert main(["transfer", str(out), str(out.with_name("a_b.h5ad")), "--out", str(tmp_path / "p.h5ad")]) == 0
    a2, b2 = ad.read_h5ad(out), ad.read_h5ad(out.with_name("a_b.h5ad"))
    pred = ad.read_h5ad(tmp_path / "p.h5ad")
    return hr.tl.label_agreement(a2, b2, obs="region").loc["overall", "agreement"], _expression_score(pred, b2)


def _cli_closes_the_gap(tmp_path, world):
    labels, expression = _cli_scores(tmp_path, world)
    return [
        closes_the_gap(got, *scores(consumer, world, "truth")[1:])
        for consumer, got in (("label_agreement", labels), ("transfer", expression))
    ]


def test_cli_check_passes(tmp_path, world):
    assert _cli_closes_the_gap(tmp_path, world) == [True, True]


def test_cli_check_catches_a_wrong_solver(tmp_path, world, wrong_solver):
    assert _cli_closes_the_gap(tmp_path, world) == [False, False]
