"""SpatialData in and out (the ``spatialdata`` extra): the same calls, the same results as on AnnData.

Every result on the SpatialData path is compared with the AnnData path on the same positions;
the tests that need spatialdata skip without it, the others check what happens without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import hiref as hr
from hiref import _spatialdata

pytestmark = [
    # spatialdata's reader and writer, about zarr's and ome-zarr's defaults: nothing hiref controls
    pytest.mark.filterwarnings("ignore:zarr v3 autosharding:UserWarning"),
    pytest.mark.filterwarnings("ignore:Call to deprecated class Scaler:DeprecationWarning"),
]

TURN = np.deg2rad(25.0)
#: The moving section's pixel frame, as its "global" transformation (a turn and a shift).
MOVING_FRAME = np.array([[np.cos(TURN), -np.sin(TURN), 30.0], [np.sin(TURN), np.cos(TURN), -20.0], [0.0, 0.0, 1.0]])


@pytest.fixture
def sd():
    return pytest.importorskip("spatialdata")


def to_spatialdata(adata: ad.AnnData, *, frame: np.ndarray | None = None, image: bool = True, radius: float = 0.5):
    """A SpatialData of ``adata``: its cells as circles at ``.obsm['spatial']`` (in pixels), ``frame`` to "global".

    The table keeps its ``.obsm['spatial']``: in a moved frame it is a stale copy, which hiref must not read.
    """
    import geopandas as gpd
    import shapely
    import spatialdata as sd
    from spatialdata.models import Image2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Affine, Identity

    to_global = Identity() if frame is None else Affine(frame, input_axes=("x", "y"), output_axes=("x", "y"))
    ids = np.arange(adata.n_obs) * 2 + 7  # instance ids unlike row positions
    circles = gpd.GeoDataFrame(
        {"radius": np.full(adata.n_obs, radius)}, geometry=shapely.points(adata.obsm["spatial"]), index=ids
    )
    table = adata.copy()
    table.obs["element"] = pd.Categorical(["spots"] * adata.n_obs)
    table.obs["spot_id"] = ids
    table = TableModel.parse(table, region="spots", region_key="element", instance_key="spot_id")
    elements = {"shapes": {"spots": ShapesModel.parse(circles, transformations={"global": to_global})}}
    if image:
        pixels = np.zeros((3, 16, 24), dtype=np.uint8)
        elements["images"] = {
            "he": Image2DModel.parse(pixels, dims=("c", "y", "x"), transformations={"global": to_global})
        }
    return sd.SpatialData(**elements, tables={"table": table})


def in_global(sdata, adata: ad.AnnData, frame: np.ndarray) -> ad.AnnData:
    """A copy of ``adata`` with ``.obsm['spatial']`` where ``sdata``'s circles are in "global" (AnnData path's input).

    They are read through spatialdata, so that both paths get the very same numbers; they are
    checked against moving the pixels by ``frame`` here.
    """
    import spatialdata as sd

    out = adata.copy()
    ids = sdata["table"].obs["spot_id"].to_numpy()
    centres = sd.get_centroids(sdata["spots"], coordinate_system="global").compute().loc[ids, ["x", "y"]].to_numpy()
    np.testing.assert_allclose(centres, out.obsm["spatial"] @ frame[:2, :2].T + frame[:2, 2], rtol=1e-12, atol=1e-9)
    out.obsm["spatial"] = centres
    return out


def matrix(element, system: str) -> np.ndarray:
    from spatialdata.transformations import get_transformation

    return get_transformation(element, system).to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))


def state(sdata) -> dict:
    """Everything a failed call must leave as it was: the tables' entries and every transformation."""
    from spatialdata.transformations import get_transformation

    out = {}
    for name, table in sdata.tables.items():
        out[name] = (list(table.obs.columns), sorted(table.obsm), sorted(table.uns))
    for _, name, element in sdata.gen_spatial_elements():
        out[name] = {k: repr(v) for k, v in get_transformation(element, get_all=True).items()}
    return out


def assert_same(a, b, path: str = "") -> None:
    """Two stored values are equal (dicts key by key, arrays element-wise, NaN equal to NaN)."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        assert sorted(a) == sorted(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
        return
    left, right = np.asarray(a), np.asarray(b)
    if left.dtype.kind in "fc" or right.dtype.kind in "fc":
        np.testing.assert_array_equal(left.astype(float), right.astype(float), err_msg=path)
    else:
        assert [str(v) for v in left.ravel()] == [str(v) for v in right.ravel()], path


@pytest.fixture
def pair(slices, sd):
    """The simulated pair as SpatialData (the moving one in a turned frame), and as AnnData in "global"."""
    a, b = slices
    s1, s2 = to_spatialdata(a), to_spatialdata(b, frame=MOVING_FRAME)
    return s1, s2, in_global(s1, a, np.eye(3)), in_global(s2, b, MOVING_FRAME)


# ------------------------------------------------------------------ without the extra


def test_import_hiref_does_not_import_spatialdata():
    code = "import sys, hiref; assert 'spatialdata' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def _fake_spatialdata() -> object:
    fake = type("SpatialData", (), {"__module__": "spatialdata._core.spatialdata"})
    return fake()


def test_a_spatialdata_object_without_the_extra_names_it(monkeypatch, slices):
    monkeypatch.setitem(sys.modules, "spatialdata", None)  # importing it fails
    a, _ = slices
    for call in (lambda s: hr.tl.align(a, s), lambda s: hr.pp.register(s, a), lambda s: hr.tl.align_series([a, s])):
        with pytest.raises(ImportError, match=r'pip install "hiref\[spatialdata\]"'):
            call(_fake_spatialdata())
    assert "hiref_match" not in a.obs


def test_an_old_spatialdata_names_the_extra(monkeypatch):
    monkeypatch.setattr(_spatialdata, "import_module", lambda name: object())
    monkeypatch.setattr(_spatialdata, "version", lambda name: "0.6.1")
    with pytest.raises(ImportError, match=r"spatialdata >= 0.7, found 0.6.1"):
        _spatialdata.require()


def test_spatialdata_is_told_by_class_without_importing_it():
    assert _spatialdata.is_spatialdata(_fake_spatialdata())
    assert not _spatialdata.is_spatialdata(ad.AnnData(np.zeros((2, 2))))
    assert _spatialdata.given([ad.AnnData(np.zeros((2, 2))), _fake_spatialdata()])


# ------------------------------------------------------------------ the same results as on AnnData


def test_register_equals_the_anndata_path_and_overlays_the_elements(pair, sd):
    s1, s2, a, b = pair
    hr.pp.register(s1, s2, use_rep=None)
    hr.pp.register(a, b, use_rep=None)
    t1, t2 = s1["table"], s2["table"]
    record, expected = t2.uns["spatial_registered"], b.uns["spatial_registered"]
    for field in ("rotation", "translation", "angle", "decision", "cost", "candidate_scores"):
        np.testing.assert_array_equal(record[field], expected[field])
    assert record["decision"] == "moved"
    np.testing.assert_array_equal(t2.obsm["spatial_registered"], b.obsm["spatial_registered"])
    np.testing.assert_array_equal(t1.obsm["spatial_registered"], a.obsm["spatial_registered"])
    # the stale copy is left as it was, the positions were read from the circles
    np.testing.assert_array_equal(t2.obsm["spatial"], s2["table"].obsm["spatial"])
    assert record["spatialdata"]["coordinate_system_added"] == "hiref_aligned"
    assert sorted(record["spatialdata"]["transformed"]) == ["he", "spots"]
    motion = np.eye(3)
    motion[:2, :2], motion[:2, 2] = record["rotation"], record["translation"]
    for element in ("spots", "he"):
        np.testing.assert_allclose(matrix(s2[element], "hiref_aligned"), motion @ MOVING_FRAME, atol=1e-12)
        np.testing.assert_array_equal(matrix(s1[element], "hiref_aligned"), np.eye(3))
    # the circles in the new system are where the registered coordinates are: the sections overlay there
    for s, t in ((s1, t1), (s2, t2)):
        centres = sd.get_centroids(s["spots"], coordinate_system="hiref_aligned").compute()
        np.testing.assert_allclose(centres[["x", "y"]].to_numpy(), t.obsm["spatial_registered"], atol=1e-9)


def test_align_equals_the_anndata_path(pair):
    s1, s2, a, b = pair
    hr.tl.align(s1, s2, progress=False)
    hr.tl.align(a, b, progress=False)
    t1, t2 = s1["table"], s2["table"]
    for t, x in ((t1, a), (t2, b)):
        np.testing.assert_array_equal(t.uns["hiref"]["partner"], x.uns["hiref"]["partner"])
        assert t.uns["hiref"]["cost"] == x.uns["hiref"]["cost"]
        assert (t.obs["hiref_match"].astype(str) == x.obs["hiref_match"].astype(str)).all()
        np.testing.assert_array_equal(t.obs["hiref_confidence"], x.obs["hiref_confidence"])
        np.testing.assert_array_equal(t.obsm["hiref_partner_spatial"], x.obsm["hiref_partner_spatial"])
        assert t.uns["hiref"]["spatialdata"] == {"table_key": "table", "coordinate_system": "global",
                                                 "region": ["spots"]}  # fmt: skip
    # the tools that read a table work on it as on the AnnData
    pd.testing.assert_frame_equal(
        hr.tl.label_agreement(t1, t2, obs="region"), hr.tl.label_agreement(a, b, obs="region")
    )
    moved = hr.tl.transfer(t1, t2, obs="region", spatial_key="hiref_partner_spatial")
    expected = hr.tl.transfer(a, b, obs="region", spatial_key="hiref_partner_spatial")
    np.testing.assert_array_equal(moved.X.toarray(), expected.X.toarray())
    binned = hr.tl.bin_spatial(t2, bins=8, spatial_key="hiref_partner_spatial")
    np.testing.assert_array_equal(binned.X, hr.tl.bin_spatial(b, bins=8, spatial_key="hiref_partner_spatial").X)
    hr.pl.alignment(t1, t2, spatial_key="hiref_partner_spatial", show=False)


def test_align_in_the_added_system_equals_aligning_registered_coordinates(pair):
    s1, s2, a, b = pair
    hr.pp.register(s1, s2, use_rep=None)
    hr.tl.align(s1, s2, coordinate_system="hiref_aligned", progress=False)
    hr.pp.register(a, b, use_rep=None)
    hr.tl.align(a, b, spatial_key="spatial_registered", progress=False)
    np.testing.assert_array_equal(s1["table"].uns["hiref"]["partner"], a.uns["hiref"]["partner"])
    assert s1["table"].uns["hiref"]["spatialdata"]["coordinate_system"] == "hiref_aligned"


def test_align_series_equals_the_anndata_path(pair, sd):
    s1, s2, a, b = pair
    keys = hr.tl.align_series([s1, s2], progress=False)
    assert keys == hr.tl.align_series([a, b], progress=False)
    np.testing.assert_array_equal(s2["table"].uns[keys[0]]["partner"], b.uns[keys[0]]["partner"])
    # one SpatialData holding every time point
    both = ad.concat({"one": a, "two": b}, label="stage", index_unique="-")
    joined = to_spatialdata(both, image=False)
    hr.tl.align_series(joined, time_key="stage", progress=False)
    hr.tl.align_series(both, time_key="stage", progress=False)
    for column in ("hiref_next", "hiref_prev"):
        assert joined["table"].obs[column].astype(str).equals(both.obs[column].astype(str))


def test_copy_returns_copies_and_leaves_the_inputs(pair):
    s1, s2, _, _ = pair
    before = state(s1), state(s2)
    out = hr.pp.register(s1, s2, use_rep=None, copy=True)
    assert (state(s1), state(s2)) == before
    assert "hiref_aligned" in out[1].coordinate_systems
    assert "spatial_registered" in out[1]["table"].uns
    out = hr.tl.align(s1, s2, progress=False, copy=True)
    assert (state(s1), state(s2)) == before
    assert "hiref_match" in out[0]["table"].obs


def test_a_spatialdata_and_an_anndata(pair):
    s1, _, a, b = pair
    hr.tl.align(s1, b, progress=False)
    hr.tl.align(a.copy(), b.copy(), progress=False)
    assert "hiref_match" in s1["table"].obs
    assert "hiref_match" in b.obs


# ------------------------------------------------------------------ round trip


def test_round_trip_keeps_every_result_and_a_second_align_replaces_only_ours(pair, sd, tmp_path):
    s1, s2, _, _ = pair
    hr.pp.register(s1, s2, use_rep=None)
    hr.tl.align(s1, s2, coordinate_system="hiref_aligned", progress=False)
    for name, s in (("one", s1), ("two", s2)):
        s.write(tmp_path / f"{name}.zarr")
    r1, r2 = (sd.read_zarr(tmp_path / f"{name}.zarr") for name in ("one", "two"))
    for s, r in ((s1, r1), (s2, r2)):
        for key in ("hiref", "spatial_registered"):
            if key in s["table"].uns:
                assert_same(dict(s["table"].uns[key]), dict(r["table"].uns[key]), key)
        for column in ("hiref_match", "hiref_cost", "hiref_confidence"):
            assert_same(s["table"].obs[column].astype(str).to_numpy(), r["table"].obs[column].astype(str).to_numpy())
        for key in s["table"].obsm:
            np.testing.assert_array_equal(np.asarray(s["table"].obsm[key]), np.asarray(r["table"].obsm[key]))
        for element in ("spots", "he"):
            np.testing.assert_array_equal(matrix(s[element], "hiref_aligned"), matrix(r[element], "hiref_aligned"))
    # A second run on the reloaded objects replaces hiref's own entries and transformations...
    hr.pp.register(r1, r2, use_rep=None)
    hr.tl.align(r1, r2, coordinate_system="hiref_aligned", progress=False, random_state=1)
    np.testing.assert_array_equal(matrix(r2["spots"], "hiref_aligned"), matrix(s2["spots"], "hiref_aligned"))
    assert r1["table"].uns["hiref"]["params"]["random_state"] == 1
    # ...and refuses to overwrite the user's.
    r2["table"].obs["mine_match"] = "a user's column"
    before = state(r1), state(r2)
    with pytest.raises(ValueError, match=r"key_added.*mine_match"):
        hr.tl.align(r1, r2, key_added="mine", progress=False)
    assert (state(r1), state(r2)) == before


# ------------------------------------------------------------------ errors name the argument and change nothing


def _refused(s1, s2, call, match: str, error: type = ValueError) -> None:
    before = state(s1), state(s2)
    with pytest.raises(error, match=match):
        call()
    assert (state(s1), state(s2)) == before


def test_a_wrong_coordinate_system_is_named(pair):
    s1, s2, _, _ = pair
    _refused(s1, s2, lambda: hr.tl.align(s1, s2, coordinate_system="aligned", progress=False),
             r"`coordinate_system`='aligned' is not a coordinate system of 'spots'.*\['global'\]")  # fmt: skip
    _refused(s1, s2, lambda: hr.pp.register(s1, s2, coordinate_system="micron"), "`coordinate_system`='micron'")


def test_a_table_that_annotates_nothing_is_named(pair, sd):
    s1, s2, _, _ = pair
    s2.tables["loose"] = ad.AnnData(np.ones((3, 2)))
    _refused(s1, s2, lambda: hr.tl.align(s1, s2, table_key=["table", "loose"], progress=False),
             r"`table_key`='loose': the table of `adata2` annotates no element")  # fmt: skip
    s2["table"].uns["spatialdata_attrs"] = {**s2["table"].uns["spatialdata_attrs"], "region": "gone"}
    _refused(s1, s2, lambda: hr.tl.align(s1, s2, table_key="table", progress=False),
             r"`table_key`='table': the table of `adata2` annotates \['gone'\], which `adata2`")  # fmt: skip


def test_two_tables_need_table_key(pair):
    s1, s2, _, _ = pair
    s1.tables["copy"] = s1["table"].copy()
    _refused(s1, s2, lambda: hr.tl.align(s1, s2, progress=False),
             r"`adata1` holds 2 tables \(\['table', 'copy'\]\); pass `table_key=`")  # fmt: skip
    _refused(s1, s2, lambda: hr.tl.align(s1, s2, table_key="tabel", progress=False),
             r"`table_key`='tabel' is not a table of `adata1`", KeyError)  # fmt: skip
    _refused(s1, s2, lambda: hr.tl.align(s1, s2, table_key=["copy"], progress=False),
             r"`table_key` must be a table name, or one per object \(2\)")  # fmt: skip
    hr.tl.align(s1, s2, table_key=["copy", "table"], progress=False)
    assert "hiref_match" in s1["copy"].obs
    assert "hiref_match" not in s1["table"].obs


def test_a_users_coordinate_system_is_not_replaced(pair):
    from spatialdata.transformations import Identity, set_transformation

    s1, s2, _, _ = pair
    set_transformation(s2["spots"], Identity(), to_coordinate_system="hiref_aligned")
    _refused(s1, s2, lambda: hr.pp.register(s1, s2, use_rep=None),
             r"`coordinate_system_added`='hiref_aligned' would replace .* of 'spots' of `adata_mov`")  # fmt: skip
    hr.pp.register(s1, s2, use_rep=None, coordinate_system_added="registered")
    assert "registered" in s2.coordinate_systems


def test_contract_clashes_on_the_table_are_refused_before_anything(pair):
    s1, s2, _, _ = pair
    s1["table"].obsm["spatial_registered"] = np.zeros((s1["table"].n_obs, 2))
    _refused(s1, s2, lambda: hr.pp.register(s1, s2, use_rep=None), r"spatial_registered.*adata_ref")


# ------------------------------------------------------------------ real data


def test_dlpfc_accuracy_is_the_same_on_both_paths(dlpfc, dlpfc_aligned, sd):
    s1, s2 = (to_spatialdata(x.copy(), image=False, radius=1.7) for x in dlpfc)
    hr.tl.align(s1, s2, progress=False, random_state=0)
    a, b = dlpfc_aligned  # hr.tl.align(a, b) with the default random_state=0, shared with other tests
    on_tables = hr.tl.label_agreement(s1["table"], s2["table"], obs="layer").loc["overall", "agreement"]
    on_anndata = hr.tl.label_agreement(a, b, obs="layer").loc["overall", "agreement"]
    assert on_tables == on_anndata
    np.testing.assert_array_equal(s2["table"].uns["hiref"]["partner"], b.uns["hiref"]["partner"])


# ------------------------------------------------------------------ the docs page runs, and says what it prints

DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "spatialdata.md"
FIGURE = DOCS_PAGE.parent / "images" / "spatialdata_overlay.png"
NUMBER = re.compile(r"-?\d+\.\d+")


def _blocks() -> list[tuple[str, str | None]]:
    """The page's Python blocks, each with the ``text`` block that follows it (what it prints), if any."""
    found = re.findall(r"```(python|text)\n(.*?)```", DOCS_PAGE.read_text(), re.DOTALL)
    out = []
    for kind, body in found:
        if kind == "python":
            out.append((body, None))
        else:
            out[-1] = (out[-1][0], body)
    return out


def _same_print(printed: str, documented: str) -> bool:
    """The printed text is the documented one, numbers within 1 % (another CPU may round the last digit)."""
    if NUMBER.sub("#", printed).strip() != NUMBER.sub("#", documented).strip():
        return False
    pairs = zip(NUMBER.findall(printed), NUMBER.findall(documented), strict=True)
    return all(abs(float(a) - float(b)) <= 0.01 * max(1.0, abs(float(b))) for a, b in pairs)


def test_the_docs_page_runs_and_both_paths_agree(shared_data, sd, tmp_path, monkeypatch, capsys):
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    namespace: dict = {}
    blocks = _blocks()
    assert len(blocks) >= 5
    for index, (code, documented) in enumerate(blocks):
        code = code.replace('DATA = "../shared/data"', f"DATA = {str(shared_data)!r}")
        if "spatialdata_plot" in code:
            pytest.importorskip("spatialdata_plot")
            with warnings.catch_warnings():  # spatialdata-plot's own deprecations
                warnings.simplefilter("ignore")
                exec(compile(code, f"docs/spatialdata.md block {index}", "exec"), namespace)
            continue
        capsys.readouterr()
        exec(compile(code, f"docs/spatialdata.md block {index}", "exec"), namespace)
        printed = capsys.readouterr().out
        if documented is not None:
            assert _same_print(printed, documented), f"block {index} printed:\n{printed}\nthe page says:\n{documented}"
    assert (tmp_path / "spatialdata_overlay.png").stat().st_size > 10_000
    if os.environ.get("HIREF_UPDATE_DOCS_FIGURES"):
        shutil.copyfile(tmp_path / "spatialdata_overlay.png", FIGURE)
    assert FIGURE.is_file()

    # The AnnData path on the same positions: the same registration, matching and accuracy.
    ref, mov = namespace["ref"], namespace["mov"]
    a = ad.read_h5ad(shared_data / "dlpfc_151673.h5ad")
    b = ad.read_h5ad(shared_data / "dlpfc_151674.h5ad")
    for adata, sdata in ((a, ref), (b, mov)):
        centres = sd.get_centroids(sdata["spots"], coordinate_system="global").compute()
        adata.obsm["spatial"] = centres.loc[sdata["table"].obs["spot_id"].to_numpy(), ["x", "y"]].to_numpy()
    hr.pp.register(a, b)
    hr.tl.align(a, b, spatial_key="spatial_registered", progress=False)
    np.testing.assert_array_equal(mov["table"].uns["spatial_registered"]["rotation"],
                                  b.uns["spatial_registered"]["rotation"])  # fmt: skip
    np.testing.assert_array_equal(mov["table"].uns["hiref"]["partner"], b.uns["hiref"]["partner"])
    on_anndata = hr.tl.label_agreement(a, b, obs="layer").loc["overall", "agreement"]
    assert namespace["accuracy"] == on_anndata


def test_a_table_annotating_points_and_the_tools_that_take_tables(slices, sd):
    from spatialdata.models import PointsModel, TableModel

    a, b = slices
    objects = []
    for adata in (a, b):
        frame = pd.DataFrame(adata.obsm["spatial"] + 5.0, columns=["x", "y"])  # the table's copy is stale
        table = adata.copy()
        table.obs["element"] = pd.Categorical(["cells"] * adata.n_obs)
        table.obs["cell_id"] = np.arange(adata.n_obs)
        table = TableModel.parse(table, region="cells", region_key="element", instance_key="cell_id")
        objects.append(sd.SpatialData(points={"cells": PointsModel.parse(frame)}, tables={"table": table}))
    hr.tl.align(*objects, use_rep="spatial", progress=False)
    shifted = [x.copy() for x in (a, b)]
    for x in shifted:
        x.obsm["spatial"] = x.obsm["spatial"] + 5.0
    hr.tl.align(*shifted, use_rep="spatial", progress=False)
    np.testing.assert_array_equal(objects[1]["table"].uns["hiref"]["partner"], shifted[1].uns["hiref"]["partner"])
    np.testing.assert_array_equal(
        objects[0]["table"].obsm["hiref_partner_spatial"], shifted[0].obsm["hiref_partner_spatial"]
    )
    with pytest.raises(TypeError, match=r"Pass its table \(`adata_source.tables\[...\]`\)"):
        hr.tl.transfer(objects[0], objects[1], obs="region")
