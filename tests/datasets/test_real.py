from __future__ import annotations

import dataclasses
import socket
import sys
import types

import anndata as ad
import numpy as np
import pandas as pd
import pooch
import pytest
import requests
import scipy.sparse as sp

import hiref as hr
from hiref.datasets import _downloads
from hiref.datasets._downloads import DownloadError

MERFISH_SHAPES = {0.26: (5584, 161), 0.21: (5578, 161)}
PASTE_SHAPES = {1: (254, 7998), 2: (251, 7713), 3: (264, 7453), 4: (262, 7571)}
MOSTA_URL = "https://figshare.com/ndownloader/files/40569779"
MERFISH_URL = "https://ndownloader.figshare.com/files/28169379"
MERFISH_SHA256 = "371723d48413ba76aba49ccf7ea24867b1db940529216fe2902484f5c2a48904"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """No test here touches the real cache, the network or an installed squidpy."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("HIREF_DATA_DIR", str(cache))
    monkeypatch.setattr(pooch, "os_cache", lambda project: cache)

    def no_network(*args, **kwargs):
        msg = "this test must not download"
        raise AssertionError(msg)

    monkeypatch.setattr(pooch, "retrieve", no_network)
    monkeypatch.setitem(sys.modules, "squidpy", None)  # `import squidpy` raises ImportError
    return cache


# --- the shared real slices ------------------------------------------------------------------------------------------


def test_merfish_hypothalamus(shared_data):
    slices = hr.datasets.merfish_hypothalamus(data_dir=shared_data)
    assert isinstance(slices, list)
    assert [a.shape for a in slices] == [MERFISH_SHAPES[0.26], MERFISH_SHAPES[0.21]]
    for adata, bregma in zip(slices, (0.26, 0.21), strict=True):
        assert adata.obsm["spatial"].shape == (adata.n_obs, 2)
        assert np.isfinite(adata.obsm["spatial"]).all()
        assert "cell_class" in adata.obs.columns
        assert adata.obs_names.is_unique
        assert set(adata.obs["bregma"].astype(float)) == {bregma}


@pytest.mark.parametrize("slice_", [1, 2, 3, 4])
def test_paste_breast(shared_data, slice_):
    (adata,) = hr.datasets.paste_breast(slice_, data_dir=shared_data)
    assert adata.shape == PASTE_SHAPES[slice_]
    assert adata.obsm["spatial"].shape == (adata.n_obs, 2)
    assert adata.obs_names.is_unique


def test_all_paste_slices_in_order(shared_data):
    slices = hr.datasets.paste_breast(slices=(4, 1), data_dir=shared_data)
    assert [a.shape for a in slices] == [PASTE_SHAPES[4], PASTE_SHAPES[1]]
    assert [a.shape for a in hr.datasets.paste_breast(data_dir=shared_data)] == list(PASTE_SHAPES.values())


@pytest.mark.parametrize("bregma", [0.21, "0.21", [0.21], np.float64(0.21)])
def test_single_bregma(shared_data, bregma):
    slices = hr.datasets.merfish_hypothalamus(bregma, data_dir=shared_data)
    assert isinstance(slices, list)
    assert [a.shape for a in slices] == [MERFISH_SHAPES[0.21]]


def test_fresh_objects(shared_data):
    (a,) = hr.datasets.paste_breast(1, data_dir=shared_data)
    a.obs["extra"] = 1
    a.obsm["spatial"][:] = 0
    (b,) = hr.datasets.paste_breast(1, data_dir=shared_data)
    assert a is not b
    assert "extra" not in b.obs.columns
    assert np.abs(b.obsm["spatial"]).sum() > 0


def test_env_var(shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HIREF_SHARED_DATA", str(shared_data))
    (adata,) = hr.datasets.paste_breast(2)
    assert adata.shape == PASTE_SHAPES[2]


def test_data_dir_beats_env_var(shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HIREF_SHARED_DATA", str(tmp_path))  # holds no data
    (adata,) = hr.datasets.merfish_hypothalamus(0.26, data_dir=shared_data)
    assert adata.shape == MERFISH_SHAPES[0.26]


def test_working_directory_is_not_searched(shared_data, tmp_path, monkeypatch):
    # <tmp>/shared/data holds the slices, as ../shared/data of <tmp>/repo; the package does not look there
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data, target_is_directory=True)
    work = tmp_path / "repo"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("HIREF_SHARED_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="HIREF_SHARED_DATA is not set"):
        hr.datasets.paste_breast(3)
    (adata,) = hr.datasets.paste_breast(3, data_dir="../shared/data")
    assert adata.shape == PASTE_SHAPES[3]


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HIREF_SHARED_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"(?s)data_dir.*HIREF_SHARED_DATA.*paste_breast_slice1\.h5ad"):
        hr.datasets.paste_breast(1, data_dir=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"(?s)lacks.*merfish_hypothalamus_bregma0\.26\.h5ad"):
        hr.datasets.merfish_hypothalamus(data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"(?s)HIREF_SHARED_DATA is not set.*paste_breast_slice4\.h5ad"):
        hr.datasets.paste_breast(4)
    monkeypatch.setenv("HIREF_SHARED_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"\$HIREF_SHARED_DATA.*lacks"):
        hr.datasets.paste_breast(4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"bregma": 0.3}, ValueError, r"0\.26, 0\.21"),
        ({"bregma": "left"}, ValueError, r"0\.26, 0\.21"),
        ({"bregma": ()}, ValueError, "empty"),
        ({"bregma": True}, TypeError, "bregma"),
    ],
)
def test_unknown_bregma(kwargs, error, match, tmp_path):
    with pytest.raises(error, match=match):
        hr.datasets.merfish_hypothalamus(**kwargs, data_dir=tmp_path)


@pytest.mark.parametrize(
    ("slices", "error", "match"),
    [(5, ValueError, r"\(1, 2, 3, 4\)"), ((1, 0), ValueError, "0"), (1.0, TypeError, "int")],
)
def test_unknown_slice(slices, error, match, tmp_path):
    with pytest.raises(error, match=match):
        hr.datasets.paste_breast(slices, data_dir=tmp_path)


# --- Vizgen reader ---------------------------------------------------------------------------------------------------

IDS = ["158338042824236264719696604356349910479", "260", "90000000000000000000000000000000000000001", "7"]


def _write_vizgen(folder, *, ids_meta=None, meta_columns=("center_x", "center_y")):
    counts = pd.DataFrame(
        {
            "cell": IDS,
            "Gad1": [0, 3, 1, 0],
            "Slc17a6": [5, 0, 0, 2],
            "Blank-0": [0, 1, 0, 0],
            "Blank-1": [2, 0, 0, 1],
        }
    )
    counts_file = folder / "cell_by_gene_S1R1.csv"
    counts.to_csv(counts_file, index=False)
    ids_meta = ids_meta if ids_meta is not None else IDS[::-1]  # another order than the counts
    order = [IDS.index(i) if i in IDS else 0 for i in ids_meta]
    meta = pd.DataFrame({"": ids_meta, "fov": [3, 3, 4, 4], "volume": [500.0, 600.0, 700.0, 800.0]})
    for col in meta_columns:
        meta[col] = [10.0 * k + (0.5 if col.endswith("y") else 0.0) for k in order]
    meta["min_x"] = 0.0
    meta_file = folder / "cell_metadata_S1R1.csv"
    meta.to_csv(meta_file, index=False)
    return counts_file, meta_file


def test_vizgen(tmp_path):
    counts_file, meta_file = _write_vizgen(tmp_path)
    adata = hr.datasets.vizgen_receptor_map(counts_file, meta_file)
    assert adata.obs_names.tolist() == IDS  # the long ids survive as exact strings
    assert adata.var_names.tolist() == ["Gad1", "Slc17a6"]
    assert sp.issparse(adata.X)
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), [[0, 5], [3, 0], [1, 0], [0, 2]])
    # coordinates and metadata follow the cell ids, not the row order of the metadata file
    np.testing.assert_allclose(adata.obsm["spatial"], [[0.0, 0.5], [10.0, 10.5], [20.0, 20.5], [30.0, 30.5]])
    assert adata.obsm["spatial"].dtype == np.float64
    np.testing.assert_array_equal(adata.obs["volume"], [800.0, 700.0, 600.0, 500.0])
    assert {"fov", "volume", "min_x"} <= set(adata.obs.columns)
    blank = adata.obsm["blank"]
    assert blank.columns.tolist() == ["Blank-0", "Blank-1"]
    np.testing.assert_array_equal(blank.to_numpy(), [[0, 2], [1, 0], [0, 0], [0, 1]])
    assert not adata.var["blank"].any()
    adata.write_h5ad(tmp_path / "v.h5ad")
    back = ad.read_h5ad(tmp_path / "v.h5ad")
    np.testing.assert_array_equal(back.obsm["blank"].to_numpy(), blank.to_numpy())
    assert back.obs_names.tolist() == IDS


def test_vizgen_keep_blanks_and_gzip(tmp_path):
    counts_file, meta_file = _write_vizgen(tmp_path)
    gz = tmp_path / "cell_by_gene_S1R1.csv.gz"
    pd.read_csv(counts_file, dtype=str).to_csv(gz, index=False)
    adata = hr.datasets.vizgen_receptor_map(gz, meta_file, drop_blanks=False)
    assert adata.var_names.tolist() == ["Gad1", "Slc17a6", "Blank-0", "Blank-1"]
    assert adata.var["blank"].tolist() == [False, False, True, True]
    assert "blank" not in adata.obsm
    assert adata.X.sum() == 15


def test_vizgen_mismatched_ids(tmp_path):
    counts_file, meta_file = _write_vizgen(tmp_path, ids_meta=[*IDS[:3], "999"])
    with pytest.raises(ValueError, match=r"(?s)disagree.*1 only in cell_by_gene.*'7'.*1 only in cell_metadata.*'999'"):
        hr.datasets.vizgen_receptor_map(counts_file, meta_file)


def test_vizgen_bad_files(tmp_path):
    counts_file, meta_file = _write_vizgen(tmp_path, meta_columns=("x", "y"))
    with pytest.raises(ValueError, match=r"center_x"):
        hr.datasets.vizgen_receptor_map(counts_file, meta_file)
    with pytest.raises(FileNotFoundError, match=r"(?s)cell_metadata.*info\.vizgen\.com/mouse-brain-map"):
        hr.datasets.vizgen_receptor_map(counts_file, tmp_path / "missing.csv")
    with pytest.raises(TypeError, match="drop_blanks"):
        hr.datasets.vizgen_receptor_map(counts_file, meta_file, drop_blanks="yes")


# --- MOSTA and MERFISH, from local files (no network) ----------------------------------------------------------------

STAGES = np.array(["E9.5", "E10.5", "E11.5"])


def _fake_mosta(n_obs=54134, n_vars=2000, *, columns=("annotation", "timepoint", "time")):
    stage = STAGES[np.arange(n_obs) % 3]
    obs = pd.DataFrame(index=[f"bin{i}" for i in range(n_obs)])
    if "annotation" in columns:
        obs["annotation"] = pd.Categorical(np.where(np.arange(n_obs) % 2, "Brain", "Heart"))
    if "timepoint" in columns:
        obs["timepoint"] = pd.Categorical(stage)
    if "time" in columns:
        obs["time"] = [float(s[1:]) for s in stage]
    X = sp.csr_matrix((n_obs, n_vars), dtype=np.float32)
    return ad.AnnData(X, obs=obs, obsm={"spatial": np.zeros((n_obs, 2))})


def _fake_merfish(n_obs=73655, n_vars=161, *, columns=("Cell_class", "Bregma")):
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(n_obs)])
    if "Cell_class" in columns:
        obs["Cell_class"] = pd.Categorical(np.where(np.arange(n_obs) % 2, "Inhibitory", "Excitatory"))
    if "Bregma" in columns:
        obs["Bregma"] = np.where(np.arange(n_obs) % 2, 26.0, 21.0)
    X = sp.csr_matrix((n_obs, n_vars), dtype=np.float32)
    return ad.AnnData(X, obs=obs, obsm={"spatial": np.zeros((n_obs, 2)), "spatial3d": np.zeros((n_obs, 3))})


@pytest.fixture(scope="module")
def mosta_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mosta") / "mosta.h5ad"
    _fake_mosta().write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def merfish_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("merfish") / "merfish.h5ad"
    _fake_merfish().write_h5ad(path)
    return path


def test_mosta_from_path(mosta_file):
    adata = hr.datasets.mosta(path=mosta_file, stages=None)
    assert adata.shape == (54134, 2000)
    default = hr.datasets.mosta(path=mosta_file)
    assert default.n_obs == 54134
    two = hr.datasets.mosta(path=mosta_file, stages=["E9.5", "E11.5"])
    assert set(two.obs["timepoint"]) == {"E9.5", "E11.5"}
    assert two.n_obs == (adata.obs["timepoint"] != "E10.5").sum()
    assert two.obsm["spatial"].shape == (two.n_obs, 2)


@pytest.mark.parametrize("stage", ["E10.5", "e10.5", "10.5", 10.5])
def test_mosta_single_stage(mosta_file, stage):
    adata = hr.datasets.mosta(path=mosta_file, stages=stage)
    assert adata.n_obs == 54134 // 3 + (54134 % 3 > 1)
    assert set(adata.obs["time"]) == {10.5}


def test_mosta_stage_from_timepoint_only(tmp_path):
    path = tmp_path / "mosta.h5ad"
    _fake_mosta(columns=("annotation", "timepoint")).write_h5ad(path)
    assert set(hr.datasets.mosta(path=path, stages="E11.5").obs["timepoint"]) == {"E11.5"}


def test_mosta_folder_and_cache(mosta_file, cache_dir, monkeypatch):
    assert hr.datasets.mosta(path=mosta_file.parent, stages="E9.5").n_obs > 0  # a folder holding mosta.h5ad
    cache_dir.mkdir()
    (cache_dir / "mosta.h5ad").symlink_to(mosta_file)
    assert hr.datasets.mosta(stages="E9.5").n_obs > 0  # the cache, no download


def test_mosta_unknown_stage(mosta_file):
    with pytest.raises(ValueError, match=r"E12\.5.*\['E9\.5', 'E10\.5', 'E11\.5'\]"):
        hr.datasets.mosta(path=mosta_file, stages=["E9.5", "E12.5"])
    with pytest.raises(ValueError, match=r"E9\.5"):
        hr.datasets.mosta(path=mosta_file, stages="ninth")
    with pytest.raises(TypeError, match="stage"):
        hr.datasets.mosta(path=mosta_file, stages=[True])


def test_mosta_wrong_file(tmp_path):
    small = tmp_path / "small.h5ad"
    _fake_mosta(n_obs=30).write_h5ad(small)
    with pytest.raises(ValueError, match=r"shape \(30, 2000\) instead of \(54134, 2000\)"):
        hr.datasets.mosta(path=small)
    no_annotation = tmp_path / "no_annotation.h5ad"
    _fake_mosta(n_obs=30, columns=("timepoint",)).write_h5ad(no_annotation)
    with pytest.raises(ValueError, match=r"no obs column\(s\) \['annotation'\]"):
        hr.datasets.mosta(path=no_annotation)


def test_merfish_from_path(merfish_file):
    adata = hr.datasets.merfish(path=merfish_file)
    assert adata.shape == (73655, 161)
    assert {"Cell_class", "Bregma"} <= set(adata.obs.columns)
    assert "spatial" in adata.obsm


def test_merfish_wrong_file(tmp_path):
    path = tmp_path / "merfish.h5ad"
    _fake_merfish(n_obs=20, columns=("Bregma",)).write_h5ad(path)
    with pytest.raises(ValueError, match=r"(?s)shape \(20, 161\).*\['Cell_class'\]"):
        hr.datasets.merfish(path=path)


def test_merfish_with_pooch(merfish_file, tmp_path, monkeypatch):
    calls = []

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        calls.append((url, known_hash, fname, progressbar))
        path.mkdir(parents=True, exist_ok=True)
        (path / fname).symlink_to(merfish_file)
        return str(path / fname)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    adata = hr.datasets.merfish(path=tmp_path / "data" / "moffitt.h5ad", progress=False)
    assert adata.shape == (73655, 161)
    assert calls == [(MERFISH_URL, f"sha256:{MERFISH_SHA256}", "moffitt.h5ad", False)]


def test_merfish_with_squidpy(merfish_file, tmp_path, monkeypatch):
    seen = []

    def fake_merfish(path=None, **kwargs):
        seen.append(path)
        return ad.read_h5ad(merfish_file)

    squidpy = types.ModuleType("squidpy")
    squidpy.datasets = types.SimpleNamespace(merfish=fake_merfish)
    monkeypatch.setitem(sys.modules, "squidpy", squidpy)
    adata = hr.datasets.merfish(path=tmp_path / "m.h5ad")
    assert adata.shape == (73655, 161)
    assert seen == [tmp_path / "m.h5ad"]

    def failing(path=None, **kwargs):
        msg = "no route to host"
        raise OSError(msg)

    squidpy.datasets = types.SimpleNamespace(merfish=failing)
    with pytest.raises(DownloadError, match=r"(?s)no route to host.*28169379.*path="):
        hr.datasets.merfish(path=tmp_path / "other.h5ad")


# --- download failures ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loader", "url", "title"), [("mosta", MOSTA_URL, "MOSTA"), ("merfish", MERFISH_URL, "MERFISH")]
)
def test_download_failure_is_clear(loader, url, title, monkeypatch):
    def offline(*args, **kwargs):
        msg = "Failed to establish a new connection"
        raise requests.exceptions.ConnectionError(msg)

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(DownloadError) as info:
        getattr(hr.datasets, loader)(progress=False)
    message = str(info.value)
    assert title in message
    assert url in message
    assert "path=" in message
    assert "Failed to establish" in message
    assert isinstance(info.value, ConnectionError)
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value.__cause__, requests.exceptions.ConnectionError)


def test_real_pooch_failure_leaves_no_file(cache_dir, monkeypatch):
    with socket.socket() as s:  # a local port that nothing listens on: refused at once, no network needed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mosta.h5ad"
    monkeypatch.undo()  # restore the real pooch.retrieve ...
    monkeypatch.setenv("HIREF_DATA_DIR", str(cache_dir))  # ... but keep the cache isolated
    monkeypatch.setitem(_downloads._REGISTRY, "mosta", dataclasses.replace(_downloads._REGISTRY["mosta"], url=url))
    with pytest.raises(DownloadError, match=rf"127\.0\.0\.1:{port}"):
        hr.datasets.mosta(progress=False)
    assert not cache_dir.exists() or not any(cache_dir.iterdir())


def test_progress_must_be_bool():
    with pytest.raises(TypeError, match="progress"):
        hr.datasets.mosta(progress="yes")
    with pytest.raises(TypeError, match="progress"):
        hr.datasets.merfish(progress=1)


# --- real downloads (run with --internet) ---------------------------------------------------------------------------


@pytest.mark.internet
def test_merfish_download(tmp_path, monkeypatch):
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "squidpy", None)
    adata = hr.datasets.merfish(path=tmp_path, progress=False)
    assert adata.shape == (73655, 161)
    assert {"Cell_class", "Bregma"} <= set(adata.obs.columns)


@pytest.mark.internet
def test_mosta_download(tmp_path, monkeypatch):
    monkeypatch.undo()
    adata = hr.datasets.mosta(path=tmp_path, progress=False, stages="E9.5")
    assert adata.n_vars == 2000
    assert set(adata.obs["timepoint"].astype(str)) == {"E9.5"}
