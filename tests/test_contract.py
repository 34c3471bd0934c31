"""The AnnData contract (hiref/_contract.py): no tool overwrites what hiref did not write, stale entries go.

The property test runs every tool that writes into the user's objects once on clean copies,
collects every name it wrote, then plants a user's entry under each of those names in turn and
checks that the tool refuses with an error naming it and leaves the object exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import hiref as hr
from hiref._contract import Writes, check_writable, write

SLOTS = ("obs", "obsm", "obsp", "uns")


def _pair(n=150, seed=0):
    a, b = hr.datasets.simulate_slices(n_obs=n, n_genes=20, missing=0.1, seed=seed)
    return a, b


def _sections(n=3):
    out = []
    for s in range(n):
        a, _ = hr.datasets.simulate_slices(n_obs=80 + 10 * s, n_genes=20, seed=s)
        a.obs_names = [f"s{s}_{name}" for name in a.obs_names]
        out.append(a)
    return out


def _series_object():
    parts = _sections()
    for t, a in enumerate(parts):
        a.obs["stage"] = f"E{t}"
    joint = ad.concat(parts)
    joint.obs["stage"] = pd.Categorical(joint.obs["stage"], categories=["E0", "E1", "E2"])
    return [joint]


def _traced_sections():
    sections = _sections()
    hr.tl.align_series(sections, use_rep="spatial", progress=False)
    return sections


def _stack_sections():
    a, b = hr.datasets.simulate_slices(n_obs=150, rotation=30, deformation=0, seed=0)
    return [a, b]


# name: (make the objects, run the tool on them)
SCENARIOS: dict[str, tuple[Callable[[], list[ad.AnnData]], Callable[[list[ad.AnnData]], object]]] = {
    "align auto": (lambda: list(_pair()), lambda o: hr.tl.align(*o, progress=False)),
    "align X_pca": (lambda: list(_pair()), lambda o: hr.tl.align(*o, use_rep="X_pca", n_pcs=5, progress=False)),
    "store_matching": (
        lambda: list(_pair()),
        lambda o: hr.tl.store_matching(*o, np.r_[np.arange(o[1].n_obs), -np.ones(o[0].n_obs - o[1].n_obs, int)]),
    ),
    "align_series list": (_sections, lambda o: hr.tl.align_series(o, use_rep="spatial", progress=False)),
    "align_series one object": (
        _series_object,
        lambda o: hr.tl.align_series(o[0], time_key="stage", use_rep="spatial", progress=False),
    ),
    "trace": (_traced_sections, lambda o: hr.tl.trace(o)),
    "stack": (_stack_sections, lambda o: hr.tl.stack(o, register_options={"use_rep": None, "n_sample": 100})),
    "register": (_stack_sections, lambda o: hr.pp.register(*o, use_rep=None, n_sample=100)),
}


def _names(adata: ad.AnnData) -> set[tuple[str, str]]:
    return {(slot, str(n)) for slot in SLOTS for n in (adata.obs.columns if slot == "obs" else getattr(adata, slot))}


def _snapshot(adata: ad.AnnData) -> dict:
    return {
        "obs": adata.obs.copy(),
        "obsm": {k: np.asarray(v).copy() for k, v in adata.obsm.items()},
        "obsp": {k: v.copy() for k, v in adata.obsp.items()},
        "uns": {k: repr(v) for k, v in adata.uns.items()},
    }


def _assert_unchanged(adata: ad.AnnData, before: dict) -> None:
    pd.testing.assert_frame_equal(adata.obs, before["obs"])
    assert set(adata.obsm) == set(before["obsm"])
    for k, v in before["obsm"].items():
        np.testing.assert_array_equal(np.asarray(adata.obsm[k]), v)
    assert set(adata.obsp) == set(before["obsp"])
    assert {k: repr(v) for k, v in adata.uns.items()} == before["uns"]


def _plant(adata: ad.AnnData, slot: str, name: str) -> None:
    if slot == "obs":
        adata.obs[name] = pd.Categorical(["user"] * adata.n_obs)
    elif slot == "obsm":
        adata.obsm[name] = np.full((adata.n_obs, 2), 7.0)
    elif slot == "obsp":
        import scipy.sparse as sp

        adata.obsp[name] = sp.eye(adata.n_obs, format="csr")
    else:
        adata.uns[name] = {"user": 1}


def _written(scenario: str) -> list[tuple[int, str, str]]:
    make, run = SCENARIOS[scenario]
    objects = make()
    before = [_names(a) for a in objects]
    run(objects)
    return sorted((i, slot, name) for i, a in enumerate(objects) for slot, name in _names(a) - before[i])


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_written_name_of_a_user_is_refused_and_the_object_kept(scenario):
    written = _written(scenario)
    assert written, f"{scenario} wrote nothing"
    make, run = SCENARIOS[scenario]
    for i, slot, name in written:
        objects = make()
        _plant(objects[i], slot, name)
        before = [_snapshot(a) for a in objects]
        with pytest.raises(ValueError, match="would overwrite") as info:
            run(objects)
        assert f".{slot}[{name!r}]" in str(info.value), (scenario, slot, name, str(info.value))
        for adata, snap in zip(objects, before, strict=True):
            _assert_unchanged(adata, snap)


def test_every_tool_writes_what_it_wrote_before_when_run_again():
    """Running a tool twice is allowed: what it wrote itself is replaced (the property test's negative)."""
    for scenario, (make, run) in SCENARIOS.items():
        objects = make()
        run(objects)
        names = [_names(a) for a in objects]
        run(objects)
        assert [_names(a) for a in objects] == names, scenario


# ------------------------------------------------------------------------------------ the bugs of issue 28


def test_align_refuses_user_cost_and_confidence_columns():
    a, b = _pair()
    a.obs["hiref_cost"] = 1.0
    b.obs["hiref_confidence"] = 2.0
    before = (_snapshot(a), _snapshot(b))
    both = r"would overwrite .obs\['hiref_cost'\] of `adata1`; .obs\['hiref_confidence'\] of `adata2`, which"
    with pytest.raises(ValueError, match=both):  # one error naming every entry on both objects
        hr.tl.align(a, b, use_rep="spatial", progress=False)
    _assert_unchanged(a, before[0])
    _assert_unchanged(b, before[1])
    del a.obs["hiref_cost"]
    with pytest.raises(ValueError, match=r"would overwrite .obs\['hiref_confidence'\] of `adata2`"):
        hr.tl.align(a, b, use_rep="spatial", progress=False)
    assert (b.obs["hiref_confidence"] == 2.0).all()


def test_align_auto_refuses_user_pca():
    a, b = _pair()
    a.obsm["hiref_pca"] = np.ones((a.n_obs, 3))
    with pytest.raises(ValueError, match=r"would overwrite .obsm\['hiref_pca'\] of `adata1`"):
        hr.tl.align(a, b, progress=False)  # use_rep="auto" computes and stores a joint PCA
    assert (a.obsm["hiref_pca"] == 1).all()


def test_realign_without_coordinates_removes_stale_confidence():
    a, b = _pair()
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    assert "hiref_confidence" in a.obs
    hr.tl.align(a, b, use_rep="spatial", spatial_key=None, progress=False)
    for adata in (a, b):
        assert "hiref_confidence" not in adata.obs
        assert "hiref_cost" in adata.obs
        listed = [str(k) for k in adata.uns["hiref"]["obs_keys"]]
        assert listed == ["hiref_match", "hiref_cost"]
        assert {c for c in adata.obs if c.startswith("hiref_")} == set(listed)


def test_store_matching_removes_the_quality_columns_of_an_alignment():
    a, b = _pair()
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    hr.tl.store_matching(a, b, hr.get.coupling(a, b), spatial_key=None)
    assert {c for c in a.obs if c.startswith("hiref_")} == {"hiref_match"}
    assert not [k for k in a.obsm if k.startswith("hiref_")]


def test_register_refuses_an_existing_obsm_entry():
    ref, mov = _stack_sections()
    mov.obsm["spatial_registered"] = np.zeros((mov.n_obs, 2))
    with pytest.raises(ValueError, match=r"would overwrite .obsm\['spatial_registered'\] of `adata_mov`"):
        hr.pp.register(ref, mov, use_rep=None, n_sample=100)
    assert (mov.obsm["spatial_registered"] == 0).all()
    assert "spatial_registered" not in mov.uns
    ref2, mov2 = _stack_sections()
    ref2.obsm["mine"] = np.zeros((ref2.n_obs, 2))
    with pytest.raises(ValueError, match=r"`key_added`='mine' would overwrite .obsm\['mine'\] of `adata_ref`"):
        hr.pp.register(ref2, mov2, use_rep=None, n_sample=100, key_added="mine")
    # in place of the moving slice's own coordinates: refused too
    with pytest.raises(ValueError, match=r"would overwrite .obsm\['spatial'\] of `adata_mov`"):
        hr.pp.register(ref2, mov2, use_rep=None, n_sample=100, key_added="spatial")


def test_register_again_and_onto_a_registered_slice():
    """A reference keeps its own coordinates (nothing lost), and a slice registered before may be the reference."""
    a, b = _stack_sections()
    c = b.copy()
    hr.pp.register(a, b, use_rep=None, n_sample=100)
    hr.pp.register(a, c, use_rep=None, n_sample=100)  # a's entry holds its own coordinates
    hr.pp.register(b, c, use_rep=None, n_sample=100)  # b's entry was written by register (b's record)
    np.testing.assert_array_equal(b.obsm["spatial_registered"], b.obsm["spatial"])


def test_transfer_refuses_a_carried_column_under_its_own_names():
    a, b = _pair()
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    a.obs["hiref_source"] = "x"
    with pytest.raises(ValueError, match=r"`obs` names \['hiref_source'\]"):
        hr.tl.transfer(a, b, obs=["region", "hiref_source"])


# ------------------------------------------------------------------------------------ the module itself


def test_writer_removes_only_its_own_stale_entries_and_records_params():
    adata = ad.AnnData(np.zeros((4, 1)))
    adata.obs["user"] = 1
    first = Writes(tool="t", key="k", uns="k", signature=("kind",), obs=("k_a", "k_b"), listed=("obs",))
    check_writable(adata, first, "adata")
    write(adata, first, record={"kind": "t"}, params={"x": None, "w": {"a": 1}}, obs={"k_a": 1, "k_b": 2})
    assert adata.uns["k"]["params"] == {"x": "", "w": '{"a": 1}'}  # through params_record
    assert list(adata.uns["k"]["obs_keys"]) == ["k_a", "k_b"]
    write(adata, first, record={"kind": "t"}, obs={"k_a": 3})
    assert "k_b" not in adata.obs
    assert "user" in adata.obs
    assert "params" not in adata.uns["k"]
    with pytest.raises(RuntimeError, match="does not list"):
        write(adata, first, obs={"user": 0})


def test_a_record_of_another_tool_is_not_ours():
    adata = ad.AnnData(np.zeros((3, 1)))
    adata.uns["k"] = {"start": 0, "obs_keys": ["k_a"]}  # a trace record
    adata.obs["k_a"] = 1
    align_like = Writes(tool="hr.tl.align", key="k", uns="k", signature=("partner", "params"), obs=("k_a",))
    with pytest.raises(ValueError, match=r"`key_added`='k' would overwrite .uns\['k'\], .obs\['k_a'\] of `adata`"):
        check_writable(adata, align_like, "adata")


def test_ownership_survives_h5ad(tmp_path):
    """A record read back from h5ad (its lists become arrays) still owns its entries, and the rest is refused."""
    a, b = _pair()
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    hr.tl.trace([a, b], keys=["hiref"])
    a.write_h5ad(tmp_path / "a.h5ad")
    b.write_h5ad(tmp_path / "b.h5ad")
    a, b = ad.read_h5ad(tmp_path / "a.h5ad"), ad.read_h5ad(tmp_path / "b.h5ad")
    hr.tl.align(a, b, use_rep="spatial", spatial_key=None, progress=False)  # replaces its own entries
    assert "hiref_confidence" not in a.obs
    assert "hiref_partner_spatial" not in a.obsm
    hr.tl.trace([a, b], keys=["hiref"])  # and trace its own column
    a.obs["hiref_labels"] = "user"  # an .obs column named like an .obsm array of ours is still the user's
    hr.tl.align(a, b, use_rep="spatial", progress=False)
    assert (a.obs["hiref_labels"] == "user").all()
    a.obsm["hiref_partner_spatial"] = np.zeros((a.n_obs, 2))
    hr.tl.align(a, b, use_rep="spatial", progress=False)  # listed in the record: ours
    del a.uns["hiref"]["obsm_keys"]
    a.obsm["hiref_partner_spatial"] = np.zeros((a.n_obs, 2))
    with pytest.raises(ValueError, match=r"\.obsm\['hiref_partner_spatial'\] of `adata1`"):
        hr.tl.align(a, b, use_rep="spatial", progress=False)
