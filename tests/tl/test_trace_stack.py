from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import hiref as hr
from hiref.tl._stack import compose_motions

SIZES = [30, 24, 28, 20, 26]


def partial_perm(rng, n1, n2):
    """A random one-to-one partial matching of n1 cells onto n2 (min(n1, n2) pairs)."""
    perm = np.full(n1, -1, dtype=np.int64)
    k = min(n1, n2)
    perm[rng.choice(n1, k, replace=False)] = rng.choice(n2, k, replace=False)
    return perm


@pytest.fixture
def chain():
    """Sections of unequal sizes with random partial matchings stored as align_series stores them."""
    rng = np.random.default_rng(7)
    sections = []
    for s, n in enumerate(SIZES):
        a = ad.AnnData(np.zeros((n, 2), dtype=np.float32), obs=pd.DataFrame(index=[f"s{s}_c{i}" for i in range(n)]))
        a.obs["kind"] = pd.Categorical(rng.choice(["A", "B", "C"], n))
        a.obsm["spatial"] = rng.random((n, 2)) * 10
        sections.append(a)
    perms = [partial_perm(rng, SIZES[i], SIZES[i + 1]) for i in range(len(SIZES) - 1)]
    for i, perm in enumerate(perms):
        hr.tl.store_matching(sections[i], sections[i + 1], perm, key_added=f"hiref_{i}_{i + 1}")
    return sections, perms


def by_hand(perms, start, target):
    """Partner of every cell of `start` in `target`, following dicts cell by cell."""
    forward = [dict(enumerate(p.tolist())) for p in perms]
    backward = [{int(v): k for k, v in enumerate(p.tolist()) if v >= 0} for p in perms]
    out = []
    for cell in range(SIZES[start]):
        here = cell
        k = start
        while k != target and here >= 0:
            here = forward[k][here] if target > k else backward[k - 1].get(here, -1)
            k += 1 if target > k else -1
        out.append(here)
    return np.array(out)


@pytest.mark.parametrize("start", [0, 2, 4])
def test_trace_equals_composition_by_hand(chain, start):
    sections, perms = chain
    table = hr.tl.trace(sections, start=start)
    others = [j for j in range(len(SIZES)) if j != start]
    assert table["section"].unique().tolist() == others
    assert len(table) == SIZES[start] * len(others)
    lost = 0
    for j in others:
        expected = by_hand(perms, start, j)
        rows = table[table["section"] == j]
        assert np.array_equal(rows["partner_index"].to_numpy(), expected)
        assert rows["cell"].astype(str).tolist() == sections[start].obs_names.tolist()
        names = np.where(expected >= 0, sections[j].obs_names.to_numpy()[np.maximum(expected, 0)], None)
        assert rows["partner"].tolist() == names.tolist()
        assert np.array_equal(rows["matched"].to_numpy(), expected >= 0)
        column = sections[start].obs[f"hiref_trace_{j}"]
        assert column.isna().to_numpy().tolist() == (expected < 0).tolist()
        assert column.dropna().astype(str).tolist() == [n for n in names if n is not None]
        lost += (expected < 0).sum()
    assert lost > 0  # unequal sizes: some chains break, and those cells are kept, unmatched
    info = sections[start].uns["hiref_trace"]
    assert info["start"] == start
    assert info["sections"].tolist() == others
    assert list(info["obs_keys"]) == [f"hiref_trace_{j}" for j in others]
    assert info["n_matched"].tolist() == [int((by_hand(perms, start, j) >= 0).sum()) for j in others]


def test_trace_options(chain):
    sections, perms = chain
    before = sections[1].obs.copy()
    table = hr.tl.trace(sections, start=1, sections=[-1, 0], inplace=False)
    assert table["section"].unique().tolist() == [4, 0]
    pd.testing.assert_frame_equal(sections[1].obs, before)
    assert "hiref_trace" not in sections[1].uns
    keys = [f"hiref_{i}_{i + 1}" for i in range(4)]
    hr.tl.trace(sections, start=1, sections=[3, 4], keys=keys, key_added="walk")
    assert {"walk_3", "walk_4"} <= set(sections[1].obs.columns)
    hr.tl.trace(sections, start=1, sections=[2], key_added="walk")  # a new trace replaces the old columns
    assert "walk_3" not in sections[1].obs.columns
    assert "walk_2" in sections[1].obs.columns
    assert np.array_equal(sections[1].obs["walk_2"].cat.codes.to_numpy(), perms[1])


def test_trace_after_align_series_and_distant_transitions():
    sections = []
    for s in range(3):
        a, _ = hr.datasets.simulate_slices(n_obs=120 + 15 * s, n_genes=10, n_regions=3, seed=s)
        a.obs_names = [f"t{s}_{n}" for n in a.obs_names]
        sections.append(a)
    keys = hr.tl.align_series(sections, use_rep="spatial", leaf_size=32, progress=False)
    table = hr.tl.trace(sections, keys=keys)
    p01 = hr.get.matching(sections[0], sections[1], key=keys[0]).perm
    p12 = hr.get.matching(sections[1], sections[2], key=keys[1]).perm
    expected = np.where(p01 >= 0, p12[np.maximum(p01, 0)], -1)
    assert np.array_equal(table.loc[table["section"] == 2, "partner_index"].to_numpy(), expected)
    consecutive = hr.tl.transitions(sections, obs="region", normalize=False)
    traced = hr.tl.transitions(sections, obs="region", normalize=False, pairs=[(0, 1), (0, 2), (2, 0)])
    assert list(traced) == ["0 -> 1", "0 -> 2", "2 -> 0"]
    pd.testing.assert_frame_equal(traced["0 -> 1"], consecutive["0 -> 1"])
    hit = expected >= 0
    counts = pd.crosstab(sections[0].obs["region"].to_numpy()[hit], sections[2].obs["region"].to_numpy()[expected[hit]])
    assert np.array_equal(traced["0 -> 2"].to_numpy(), counts.to_numpy())
    assert traced["2 -> 0"].to_numpy().sum() == (hr.tl.trace(sections, start=2, sections=[0])["matched"]).sum()
    with pytest.raises(TypeError, match="`pairs`"):
        hr.tl.transitions(sections, obs="region", pairs=[0, 2])
    with pytest.raises(ValueError, match="`pairs` holds 5"):
        hr.tl.transitions(sections, obs="region", pairs=[(0, 5)])


def test_trace_errors_write_nothing(chain):
    sections, _ = chain
    snapshot = sections[0].obs.copy(), dict(sections[0].uns)
    with pytest.raises(ValueError, match="`start` holds 9"):
        hr.tl.trace(sections, start=9)
    with pytest.raises(TypeError, match="`sections`"):
        hr.tl.trace(sections, sections="1")
    with pytest.raises(ValueError, match="`keys` must hold one key per consecutive pair"):
        hr.tl.trace(sections, keys=["hiref_0_1"])
    with pytest.raises(KeyError, match=r"no aligned series.*run hr\.tl\.align_series first"):
        hr.tl.trace(sections[0])  # one AnnData: a series stored on it is needed
    with pytest.raises(TypeError, match="`data` must be the list of sections"):
        hr.tl.trace("sections")
    with pytest.raises(KeyError, match=r"'other_0_1'.*align_series"):
        hr.tl.trace(sections, key="other")
    del sections[3].uns["hiref_3_4"]  # the last step is missing: fails after three steps, writes nothing
    with pytest.raises(KeyError, match="hiref_3_4"):
        hr.tl.trace(sections)
    pd.testing.assert_frame_equal(sections[0].obs, snapshot[0])
    assert set(sections[0].uns) == set(snapshot[1])
    sections[0].obs["hiref_trace_1"] = "mine"
    with pytest.raises(ValueError, match="`key_added`='hiref_trace' would overwrite"):
        hr.tl.trace(sections, sections=[1])


def test_trace_refuses_reordered_sections(chain):
    sections, _ = chain
    shuffled = [sections[0], sections[1][::-1].copy(), *sections[2:]]
    with pytest.raises(ValueError, match="no longer match"):
        hr.tl.trace(shuffled)
    subset = [sections[0], sections[1][:10].copy(), *sections[2:]]
    with pytest.raises(ValueError, match="subset"):
        hr.tl.trace(subset, start=1)


def rotation(degrees, *, reflect=False):
    t = np.deg2rad(degrees)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return R @ np.diag([1.0, -1.0]) if reflect else R


def test_compose_motions_is_the_product():
    R1, t1 = rotation(30), np.array([2.0, -1.0])
    R2, t2 = rotation(-75, reflect=True), np.array([0.5, 4.0])
    out = compose_motions([(R1, t1), (R2, t2)])
    assert np.allclose(out[0][0], np.eye(2))
    assert np.allclose(out[0][1], 0)
    R, t = out[2]
    x = np.random.default_rng(0).random((5, 2))
    assert np.allclose(x @ R.T + t, (x @ R2.T + t2) @ R1.T + t1)  # into section 1's frame, then section 0's
    assert np.allclose(R, R1 @ R2)
    assert np.allclose(t, R1 @ t2 + t1)
    assert np.isclose(np.linalg.det(R), -1.0)


def rigid_series():
    """Three copies of one point cloud, each moved by a known motion; returns sections and their motions."""
    rng = np.random.default_rng(1)
    base = rng.random((300, 2)) * [10.0, 6.0]
    base = base[(base[:, 0] - 5) ** 2 / 25 + (base[:, 1] - 3) ** 2 / 9 < 1]  # an ellipse: no symmetry to confuse
    base = np.vstack([base, [[9.0, 3.0], [9.5, 3.2], [9.2, 2.7]]])  # a bump: breaks the mirror symmetry
    truth = [(np.eye(2), np.zeros(2)), (rotation(40), np.array([3.0, -2.0])), (rotation(-110), np.array([-5.0, 8.0]))]
    sections = []
    for s, (R, t) in enumerate(truth):
        a = ad.AnnData(np.zeros((len(base), 1), dtype=np.float32))
        a.obs_names = [f"s{s}_{i}" for i in range(len(base))]
        a.obsm["spatial"] = (base - t) @ R  # so that R @ x + t gives back `base`
        sections.append(a)
    return base, truth, sections


def test_stack_recovers_known_motions():
    base, truth, sections = rigid_series()
    motions = hr.tl.stack(sections, z=[0.0, 2.5, 7.0], register_options={"use_rep": None, "reflection": False})
    for s, (a, (R, t), motion) in enumerate(zip(sections, truth, motions, strict=True)):
        assert np.allclose(motion["rotation"], R, atol=1e-6)
        assert np.allclose(motion["translation"], t, atol=1e-5)
        assert motion["z"] == [0.0, 2.5, 7.0][s]
        xyz = a.obsm["spatial_3d"]
        assert xyz.shape == (a.n_obs, 3)
        assert np.allclose(xyz[:, :2], base, atol=1e-5)
        assert np.all(xyz[:, 2] == motion["z"])
        assert np.allclose(a.uns["spatial_3d"]["rotation"], R, atol=1e-6)
        assert a.uns["spatial_3d"]["section"] == s
    assert "step" not in sections[0].uns["spatial_3d"]
    step = sections[2].uns["spatial_3d"]["step"]  # section 2 onto section 1
    assert np.allclose(step["rotation"], truth[1][0].T @ truth[2][0], atol=1e-6)


def test_stack_spacing_key_added_and_inplace():
    _, _, sections = rigid_series()
    motions = hr.tl.stack(sections, spacing=3.0, key_added="xyz", inplace=False,
                          register_options={"use_rep": None, "reflection": False})  # fmt: skip
    assert [m["z"] for m in motions] == [0.0, 3.0, 6.0]
    assert all("xyz" not in a.obsm and "xyz" not in a.uns for a in sections)
    hr.tl.stack(sections, spacing=3.0, key_added="xyz", register_options={"use_rep": None, "reflection": False})
    assert sections[2].obsm["xyz"][0, 2] == 6.0


def test_stack_validates_before_writing():
    _, _, sections = rigid_series()
    options = {"use_rep": None}

    def untouched():
        return all("spatial_3d" not in a.obsm and "spatial_3d" not in a.uns for a in sections)

    with pytest.raises(ValueError, match="either `spacing` or `z`"):
        hr.tl.stack(sections, spacing=1.0, z=[0, 1, 2], register_options=options)
    with pytest.raises(ValueError, match="`z` must hold one position per section"):
        hr.tl.stack(sections, z=[0, 1], register_options=options)
    with pytest.raises(ValueError, match="`spacing` must be > 0"):
        hr.tl.stack(sections, spacing=-1.0, register_options=options)
    with pytest.raises(ValueError, match="`register_options` cannot set"):
        hr.tl.stack(sections, register_options={"key_added": "x"})
    with pytest.raises(ValueError, match="`n_angles`"):  # the register of the first pair fails
        hr.tl.stack(sections, register_options={"use_rep": None, "n_angles": 0})
    assert untouched()
    sections[2].obsm["spatial"] = np.column_stack([sections[2].obsm["spatial"], np.zeros(sections[2].n_obs)])
    with pytest.raises(ValueError, match=r"`data\[2\].obsm\['spatial'\]` must hold 2-D"):
        hr.tl.stack(sections, register_options=options)
    del sections[2].obsm["spatial"]
    with pytest.raises(KeyError, match=r"`data\[2\]` has no .obsm\['spatial'\]"):
        hr.tl.stack(sections, register_options=options)
    assert untouched()
    sections[0].uns["spatial_3d"] = "not ours"
    _, _, fresh = rigid_series()
    fresh[0].uns["spatial_3d"] = "not ours"
    with pytest.raises(ValueError, match="`key_added`='spatial_3d' would overwrite"):
        hr.tl.stack(fresh, register_options=options)


@pytest.mark.filterwarnings("ignore:Writing zarr v2:UserWarning")
@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_series_keys_survive_writing(chain, tmp_path, fmt):
    sections, _ = chain
    hr.tl.trace(sections, start=0)
    hr.tl.stack(sections, spacing=2.0, register_options={"use_rep": None, "n_sample": 50, "n_iter": 0})
    for s, a in enumerate(sections):
        getattr(a, f"write_{fmt}")(tmp_path / f"s{s}.{fmt}")
    back = [getattr(ad, f"read_{fmt}")(tmp_path / f"s{s}.{fmt}") for s in range(len(sections))]
    for a, b in zip(sections, back, strict=True):
        assert np.allclose(a.obsm["spatial_3d"], b.obsm["spatial_3d"])
        assert np.allclose(a.uns["spatial_3d"]["rotation"], b.uns["spatial_3d"]["rotation"])
        assert np.allclose(a.uns["spatial_3d"]["translation"], b.uns["spatial_3d"]["translation"])
        assert a.uns["spatial_3d"]["z"] == b.uns["spatial_3d"]["z"]
    for j in range(1, len(SIZES)):
        column = f"hiref_trace_{j}"
        assert sections[0].obs[column].astype(object).equals(back[0].obs[column].astype(object))
    assert list(back[0].uns["hiref_trace"]["obs_keys"]) == list(sections[0].uns["hiref_trace"]["obs_keys"])
    again = hr.tl.trace(back, start=0, inplace=False)  # the stored matchings still compose after reading
    pd.testing.assert_frame_equal(again, hr.tl.trace(sections, start=0, inplace=False), check_categorical=False)
    ax = hr.pl.stack(back, trace_key="hiref_trace", n_lines=10, show=False)
    assert ax.name == "3d"


def test_trace_on_one_anndata_follows_the_next_columns():
    parts = []
    for t in range(3):
        a, _ = hr.datasets.simulate_slices(n_obs=90 + 15 * t, n_genes=8, n_regions=3, seed=t)
        a.obs_names = [f"t{t}_{n}" for n in a.obs_names]
        a.obs["stage"] = f"E{t}"
        parts.append(a)
    joint = ad.concat(parts)
    joint.obs["stage"] = pd.Categorical(joint.obs["stage"], categories=["E2", "E1", "E0"])
    hr.tl.align_series(joint, time_key="stage", order=["E0", "E1", "E2"], use_rep="spatial", progress=False)
    table = hr.tl.trace(joint)
    nxt = joint.obs["hiref_next"]
    first = joint.obs_names[(joint.obs["stage"] == "E0").to_numpy()]
    for j, hops in ((1, 1), (2, 2)):
        expected = []
        for cell in first:
            here = cell
            for _ in range(hops):
                here = nxt[here] if isinstance(here, str) else None
                here = here if isinstance(here, str) else None
            expected.append(here)
        rows = table[table["section"] == j]
        assert rows["cell"].astype(str).tolist() == first.tolist()
        assert rows["partner"].tolist() == expected
        hit = rows["matched"].to_numpy()
        assert joint.obs_names[rows["partner_index"].to_numpy()[hit]].tolist() == [e for e in expected if e]
        column = joint.obs[f"hiref_trace_{j}"]
        assert column[first].astype(object).where(column[first].notna(), None).tolist() == expected
        assert column[~joint.obs_names.isin(first)].isna().all()
    assert list(joint.uns["hiref_trace"]["order"]) == ["E0", "E1", "E2"]
    back = hr.tl.trace(joint, start=-1, sections=[0], inplace=False)  # E2 back to E0
    prev = joint.obs["hiref_prev"]
    last = joint.obs_names[(joint.obs["stage"] == "E2").to_numpy()]
    hops = [prev[prev[c]] if isinstance(prev[c], str) else None for c in last]
    assert back["partner"].tolist() == [h if isinstance(h, str) else None for h in hops]
    consecutive = hr.tl.transitions(joint, obs="region", normalize=False)
    traced = hr.tl.transitions(joint, obs="region", normalize=False, pairs=[(0, 1), (0, 2)])
    assert list(traced) == ["E0 -> E1", "E0 -> E2"]
    pd.testing.assert_frame_equal(traced["E0 -> E1"], consecutive["E0 -> E1"])
    hit = table[(table["section"] == 2) & table["matched"]]
    early = joint.obs.loc[hit["cell"].astype(str), "region"].to_numpy()
    late = joint.obs["region"].to_numpy()[hit["partner_index"].to_numpy()]
    assert np.array_equal(traced["E0 -> E2"].to_numpy(), pd.crosstab(early, late).to_numpy())
    with pytest.raises(TypeError, match="`keys`"):
        hr.tl.trace(joint, keys=["a", "b"])
    with pytest.raises(KeyError, match=r"run hr\.tl\.align_series first"):
        hr.tl.trace(joint, key="other")
