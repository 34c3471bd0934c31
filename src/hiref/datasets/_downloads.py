"""Loaders of full public spatial-transcriptomics datasets (downloaded with pooch) and of Vizgen exports."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hiref._logging import logger

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["DownloadError", "merfish", "mosta", "vizgen_receptor_map"]

CACHE_ENV_VAR = "HIREF_DATA_DIR"


class DownloadError(RuntimeError, ConnectionError):
    """A dataset could not be downloaded; the message says from where and how to get it by hand."""


@dataclass(frozen=True)
class _Remote:
    """One downloadable file: where it lives, what it must look like once read."""

    title: str
    url: str
    fname: str
    known_hash: str | None
    shape: tuple[int, int]
    obs_columns: tuple[str, ...]


_REGISTRY: dict[str, _Remote] = {
    # moscot's preprocessed MOSTA subset (moscot: src/moscot/datasets.py `mosta`). moscot publishes
    # no checksum for it, only the shape, so the shape is checked after reading instead.
    "mosta": _Remote(
        title="MOSTA mouse embryo (moscot's preprocessed subset)",
        url="https://figshare.com/ndownloader/files/40569779",
        fname="mosta.h5ad",
        known_hash=None,
        shape=(54134, 2000),
        obs_columns=("annotation",),
    ),
    # squidpy's copy of Moffitt et al. 2018 (squidpy: src/squidpy/datasets/datasets.yaml `merfish`).
    "merfish": _Remote(
        title="MERFISH mouse hypothalamus (Moffitt et al. 2018, squidpy's copy)",
        url="https://ndownloader.figshare.com/files/28169379",
        fname="merfish.h5ad",
        known_hash="sha256:371723d48413ba76aba49ccf7ea24867b1db940529216fe2902484f5c2a48904",
        shape=(73655, 161),
        obs_columns=("Cell_class", "Bregma"),
    ),
}


def _cache_dir() -> Path:
    """``$HIREF_DATA_DIR`` if set, else pooch's per-user cache folder for hiref."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("hiref"))


def _target(name: str, path: str | os.PathLike[str] | None) -> Path:
    """Where the file of dataset ``name`` is (or will be): ``path``, a file inside the folder ``path``, or the cache."""
    fname = _REGISTRY[name].fname
    if path is None:
        return _cache_dir() / fname
    target = Path(path).expanduser()
    if target.is_dir():
        return target / fname
    return target


def _by_hand(name: str, target: Path) -> str:
    entry = _REGISTRY[name]
    return (
        f"Download it by hand (e.g. `curl -L -o {entry.fname} {entry.url}` or a web browser) and pass "
        f"`path='{entry.fname}'`, or put it at {str(target)!r}."
    )


def _download(name: str, target: Path, *, progress: bool) -> Path:
    """Fetch dataset ``name`` into ``target`` with pooch, which writes to a temporary file and moves it into place."""
    import pooch

    entry = _REGISTRY[name]
    logger.info("downloading %s from %s to %s", entry.title, entry.url, target)
    try:
        fetched = pooch.retrieve(
            entry.url,
            known_hash=entry.known_hash,
            fname=target.name,
            path=target.parent,
            progressbar=progress,
        )
    except (OSError, ValueError) as err:  # requests' errors are OSErrors; a hash mismatch is a ValueError
        reason = f"{type(err).__name__}: {err}"
        msg = f"Could not download the {entry.title} dataset from {entry.url} ({reason}). {_by_hand(name, target)}"
        raise DownloadError(msg) from err
    return Path(fetched)


def _read_checked(name: str, file: Path, source: str) -> AnnData:
    import anndata as ad

    return _check(name, ad.read_h5ad(file), source)


def _check(name: str, adata: AnnData, source: str) -> AnnData:
    """Raise a ValueError unless ``adata`` has the shape, obs columns and ``obsm['spatial']`` of dataset ``name``."""
    entry = _REGISTRY[name]
    problems = []
    if tuple(adata.shape) != entry.shape:
        problems.append(f"shape {adata.shape} instead of {entry.shape}")
    missing = [c for c in entry.obs_columns if c not in adata.obs.columns]
    if missing:
        problems.append(f"no obs column(s) {missing} (it has {list(adata.obs.columns)})")
    if "spatial" not in adata.obsm:
        problems.append("no obsm['spatial']")
    if problems:
        msg = (
            f"{source} does not hold the {entry.title} dataset: {'; '.join(problems)}. "
            f"Expected the file of {entry.url}."
        )
        raise ValueError(msg)
    return adata


def _stage_label(value: object) -> str:
    """``"E9.5"``, ``"e9.5"``, ``"9.5"`` and ``9.5`` all give ``"E9.5"``."""
    if isinstance(value, bool) or not isinstance(value, Real | str):
        msg = f"A stage must be a string like 'E9.5' or a number like 9.5, got {value!r}."
        raise TypeError(msg)
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text[:1] in ("E", "e"):
        text = text[1:]
    try:
        number = float(text)
    except ValueError:
        msg = f"A stage must be a string like 'E9.5' or a number like 9.5, got {value!r}."
        raise ValueError(msg) from None
    return f"E{number:g}"


def _stage_of_cells(adata: AnnData) -> pd.Series:
    """Each cell's stage as ``"E9.5"``: from the numeric ``obs['time']`` if present, else ``obs['timepoint']``."""
    for col in ("time", "timepoint"):
        if col not in adata.obs.columns:
            continue
        values = adata.obs[col].astype(str)
        try:
            labels = {v: _stage_label(v) for v in values.unique()}
        except (TypeError, ValueError):
            continue
        return values.map(labels)
    msg = (
        "The MOSTA file has no usable stage column: expected obs['time'] (9.5, 10.5, ...) or "
        f"obs['timepoint'] ('E9.5', ...); it has {list(adata.obs.columns)}."
    )
    raise ValueError(msg)


def mosta(
    *,
    stages: str | float | Sequence[str | float] | None = ("E9.5", "E10.5", "E11.5"),
    path: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> AnnData:
    """Mouse embryo Stereo-seq sections of MOSTA (Chen et al. 2022), as preprocessed by moscot.

    The subset that :func:`moscot.datasets.mosta` serves: three whole-embryo sections, E9.5
    (E2S1), E10.5 (E2S1) and E11.5 (E1S2), 54,134 cells (bins) in all, with the 2,000 highly
    variable genes. ``.X`` holds log-normalised expression (:func:`scanpy.pp.normalize_total`
    then :func:`scanpy.pp.log1p`), ``.layers["count"]`` the counts. A spatio-temporal series:
    align consecutive stages.

    The file (figshare ``https://figshare.com/ndownloader/files/40569779``) is
    downloaded once with :mod:`pooch` into ``$HIREF_DATA_DIR`` if set, else
    ``pooch.os_cache("hiref")``, and read from there afterwards. moscot publishes no checksum
    for it, so none is checked (``known_hash=None``); the shape, the obs columns and
    ``obsm["spatial"]`` are checked after reading instead. Without network access, download
    the file by hand and pass ``path=``.

    Parameters
    ----------
    stages
        Stage(s) to keep, as ``"E9.5"``, ``"9.5"`` or ``9.5``; a single value is accepted.
        ``None`` keeps all three.
    path
        The h5ad file to read (read as is, without network access, when it exists) or to
        download to; a folder means ``<folder>/mosta.h5ad``. ``None`` uses the cache.
    progress
        Show a progress bar while downloading.

    Returns
    -------
    The cells of the requested stages (in file order) with

    - ``.obsm["spatial"]``: the bin coordinates of each section;
    - ``.obs["annotation"]``: tissue/cell-type label (e.g. Brain, Heart, Liver...);
    - ``.obs["timepoint"]``: the stage as a category (``"E9.5"``...) and ``.obs["time"]`` the
      same as a number (9.5...), the key moscot's spatio-temporal tutorial uses;
    - further obs columns from moscot's preprocessing: QC metrics (``n_genes_by_counts``,
      ``total_counts``, ``pct_counts_mt``...) and per-organ ``*_mapping``/``*_annotation`` pairs;
    - ``.layers["count"]``: counts.

    Raises
    ------
    DownloadError
        (a :class:`ConnectionError` and :class:`RuntimeError`) when the download fails; the
        message gives the URL and how to download by hand.
    ValueError
        When the file is not the expected one, or a stage is not in it (the message lists
        the stages it has).

    Examples
    --------
    >>> import hiref as hr
    >>> adata = hr.datasets.mosta(stages=["E9.5", "E10.5"])  # doctest: +SKIP
    >>> adata.obs["timepoint"].cat.categories.tolist()  # doctest: +SKIP
    ['E10.5', 'E9.5']
    """
    if not isinstance(progress, bool):
        msg = f"`progress` must be a bool, got {progress!r}."
        raise TypeError(msg)
    wanted = None
    if stages is not None:
        wanted = list(dict.fromkeys(_stage_label(s) for s in ([stages] if isinstance(stages, str | Real) else stages)))
        if not wanted:
            msg = "`stages` is empty; pass None to keep all stages."
            raise ValueError(msg)
    target = _target("mosta", path)
    source = f"`path` = {str(target)!r}" if path is not None else str(target)
    if target.is_file():
        logger.info("reading %s", target)
    else:
        target = _download("mosta", target, progress=progress)
    adata = _read_checked("mosta", target, source)
    if wanted is None:
        return adata
    cell_stage = _stage_of_cells(adata)
    available = sorted(cell_stage.unique(), key=lambda s: float(s[1:]))
    unknown = [s for s in wanted if s not in available]
    if unknown:
        msg = f"Unknown MOSTA stage(s) {unknown}: this file has {available}."
        raise ValueError(msg)
    return adata[cell_stage.isin(wanted).to_numpy()].copy()


def merfish(*, path: str | os.PathLike[str] | None = None, progress: bool = True) -> AnnData:
    """MERFISH atlas of the mouse hypothalamic preoptic region (Moffitt et al. 2018), squidpy's copy.

    73,655 cells x 161 genes from 12 consecutive sections (Bregma +0.26 to -0.29 mm), as squidpy serves it in
    :func:`squidpy.datasets.merfish`, with ``.X`` as in squidpy's file. Consecutive sections
    (by ``obs["Bregma"]``) make alignment pairs; :func:`~hiref.datasets.merfish_hypothalamus`
    gives two sections of this atlas (Bregma +0.26 and +0.21 mm, from another source) without a download.

    An existing file at ``path`` (or in the cache) is read as is, without network access.
    Otherwise, when squidpy is installed (``pip install hiref[squidpy]``), this calls
    ``squidpy.datasets.merfish(path=...)``; without it, the same file
    (``https://ndownloader.figshare.com/files/28169379``, about 49 MB) is downloaded with :mod:`pooch`
    and its sha256 checked. The file goes to ``path``, else ``$HIREF_DATA_DIR`` if set, else
    ``pooch.os_cache("hiref")``. Shape, obs columns and ``obsm["spatial"]`` are checked after
    reading.

    Parameters
    ----------
    path
        The h5ad file to read (when it exists) or to download to; a folder means
        ``<folder>/merfish.h5ad``. ``None`` uses the cache.
    progress
        Show a progress bar while downloading with pooch (squidpy always shows its own).

    Returns
    -------
    The :class:`~anndata.AnnData` as squidpy serves it:

    - ``.obs``: ``Cell_ID``, ``Animal_ID``, ``Animal_sex``, ``Behavior``, ``Bregma`` (the
      section: Bregma position in hundredths of a mm, e.g. ``26.0`` for +0.26 mm),
      ``Centroid_X``, ``Centroid_Y``, ``Cell_class`` (e.g. Inhibitory, Excitatory, Astrocyte,
      OD Mature 2, Ambiguous), ``Neuron_cluster_ID`` and ``batch`` (the section index as a
      string);
    - ``.obsm["spatial"]`` (x, y) and ``.obsm["spatial3d"]`` (x, y, section);
    - ``.uns["Cell_class_colors"]``.

    Raises
    ------
    DownloadError
        (a :class:`ConnectionError` and :class:`RuntimeError`) when the download fails; the
        message gives the URL and how to download by hand.
    ValueError
        When the file read is not the expected one.

    Examples
    --------
    >>> import hiref as hr
    >>> adata = hr.datasets.merfish()  # doctest: +SKIP
    >>> s1 = adata[adata.obs["Bregma"] == 26.0].copy()  # doctest: +SKIP
    """
    if not isinstance(progress, bool):
        msg = f"`progress` must be a bool, got {progress!r}."
        raise TypeError(msg)
    target = _target("merfish", path)
    source = f"`path` = {str(target)!r}" if path is not None else str(target)
    if target.is_file():
        logger.info("reading %s", target)
        return _read_checked("merfish", target, source)
    try:
        from squidpy import datasets as sq_datasets
    except ImportError:
        sq_datasets = None
    if sq_datasets is None:
        return _read_checked("merfish", _download("merfish", target, progress=progress), source)
    logger.info("downloading through squidpy.datasets.merfish to %s", target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        adata = sq_datasets.merfish(path=target)
    except (OSError, RuntimeError, ValueError, ExceptionGroup) as err:
        entry = _REGISTRY["merfish"]
        msg = (
            f"squidpy.datasets.merfish could not get the {entry.title} dataset ({type(err).__name__}: {err}). "
            f"It is {entry.url}. {_by_hand('merfish', target)}"
        )
        raise DownloadError(msg) from err
    return _check("merfish", adata, source)


def _header(path: Path, arg: str) -> list[str]:
    """The column names of a csv file (as pandas names them), with at least a cell id column and one more."""
    header = pd.read_csv(path, nrows=0).columns.tolist()
    if len(header) < 2:
        msg = f"`{arg}` = {str(path)!r} has {len(header)} column(s); expected the cell id column and more."
        raise ValueError(msg)
    return header


def vizgen_receptor_map(
    cell_by_gene: str | os.PathLike[str],
    cell_metadata: str | os.PathLike[str],
    *,
    drop_blanks: bool = True,
) -> AnnData:
    """Read one section of the Vizgen MERFISH Mouse Brain Receptor Map from the two files Vizgen ships.

    Vizgen's showcase data set (3 coronal slices x 3 replicates of an adult mouse brain) is
    described on https://info.vizgen.com/mouse-brain-map and lies in the public bucket
    ``gs://public-datasets-vizgen-merfish/datasets/mouse_brain_map/BrainReceptorShowcase/``
    (over HTTPS: ``https://storage.googleapis.com/public-datasets-vizgen-merfish/datasets/mouse_brain_map/BrainReceptorShowcase/``),
    one folder ``Slice{s}/Replicate{r}/`` per section. Download ``cell_by_gene_S{s}R{r}.csv`` and
    ``cell_metadata_S{s}R{r}.csv`` of a section yourself (hiref does not download them), e.g.
    ``Slice2/Replicate3/cell_by_gene_S2R3.csv``. Replicates of one slice, or neighbouring
    slices, make alignment pairs.

    Parameters
    ----------
    cell_by_gene
        ``cell_by_gene_S{s}R{r}.csv`` (``.csv.gz`` works too): a header row, then one row per
        cell: the cell id, then the transcript count of each gene, ``Blank-*`` controls included.
    cell_metadata
        ``cell_metadata_S{s}R{r}.csv``: the cell id (first column), then ``fov``, ``volume``,
        ``center_x``, ``center_y``, ``min_x``, ``max_x``, ``min_y``, ``max_y`` (µm). It must list
        the same cells as ``cell_by_gene`` (in any order).
    drop_blanks
        Move the ``Blank-*`` control columns (blank barcodes, a measure of false detections) out
        of ``.X`` into ``.obsm["blank"]``. If False they stay in ``.X``, marked in ``.var["blank"]``.

    Returns
    -------
    :class:`~anndata.AnnData` with

    - ``.X``: transcript counts, :class:`scipy.sparse.csr_matrix` of float32, cells in the order
      of ``cell_by_gene``; ``obs_names`` are Vizgen's cell ids (as strings) and ``var_names``
      the genes;
    - ``.obs``: every metadata column (``fov``, ``volume``, ``center_x``, ``center_y``,
      ``min_x``...), aligned by cell id;
    - ``.obsm["spatial"]``: ``center_x``, ``center_y`` in µm (float64);
    - ``.var["blank"]``: whether the column is a blank control;
    - ``.obsm["blank"]`` (only with ``drop_blanks=True``): a DataFrame of the blank controls'
      counts, one column per control;
    - ``.uns["source"]``: the two file names.

    Examples
    --------
    >>> import hiref as hr
    >>> adata = hr.datasets.vizgen_receptor_map(
    ...     "cell_by_gene_S2R3.csv", "cell_metadata_S2R3.csv"
    ... )  # doctest: +SKIP
    """
    import scipy.sparse as sp
    from anndata import AnnData

    if not isinstance(drop_blanks, bool):
        msg = f"`drop_blanks` must be a bool, got {drop_blanks!r}."
        raise TypeError(msg)
    where = (
        "Get them from https://info.vizgen.com/mouse-brain-map or https://storage.googleapis.com/"
        "public-datasets-vizgen-merfish/datasets/mouse_brain_map/BrainReceptorShowcase/Slice{s}/Replicate{r}/."
    )
    files = {"cell_by_gene": Path(cell_by_gene).expanduser(), "cell_metadata": Path(cell_metadata).expanduser()}
    for arg, file in files.items():
        if not file.is_file():
            msg = f"`{arg}` = {str(file)!r} does not exist. {where}"
            raise FileNotFoundError(msg)

    # Cell ids are long integers (up to 39 digits): read them as strings, never as numbers.
    header = _header(files["cell_by_gene"], "cell_by_gene")
    genes = header[1:]
    dtype = {header[0]: str, **dict.fromkeys(genes, np.float32)}
    ids: list[str] = []
    blocks = []
    with pd.read_csv(files["cell_by_gene"], index_col=0, dtype=dtype, chunksize=20_000) as reader:
        for chunk in reader:  # in chunks, so only one dense block is in memory at a time
            ids += chunk.index.tolist()
            blocks.append(sp.csr_matrix(chunk.to_numpy(dtype=np.float32)))
    X = (
        sp.vstack(blocks, format="csr", dtype=np.float32)
        if blocks
        else sp.csr_matrix((0, len(genes)), dtype=np.float32)
    )
    ids_index = pd.Index(ids, dtype=str)
    if ids_index.has_duplicates:
        dup = ids_index[ids_index.duplicated()][:3].tolist()
        msg = f"`cell_by_gene` = {str(files['cell_by_gene'])!r} repeats cell ids, e.g. {dup}."
        raise ValueError(msg)

    header = _header(files["cell_metadata"], "cell_metadata")
    meta = pd.read_csv(files["cell_metadata"], index_col=0, dtype={header[0]: str})
    meta.index = pd.Index(meta.index, dtype=str, name=None)
    missing_cols = [c for c in ("center_x", "center_y") if c not in meta.columns]
    if missing_cols:
        msg = (
            f"`cell_metadata` = {str(files['cell_metadata'])!r} has no column(s) {missing_cols} "
            f"(it has {list(meta.columns)}); is it a Vizgen cell_metadata file?"
        )
        raise ValueError(msg)
    if meta.index.has_duplicates:
        dup = meta.index[meta.index.duplicated()][:3].tolist()
        msg = f"`cell_metadata` = {str(files['cell_metadata'])!r} repeats cell ids, e.g. {dup}."
        raise ValueError(msg)
    only_counts = ids_index.difference(meta.index)
    only_meta = meta.index.difference(ids_index)
    if len(only_counts) or len(only_meta):
        msg = (
            "The cell ids of `cell_by_gene` and `cell_metadata` disagree: "
            f"{len(only_counts)} only in cell_by_gene (e.g. {only_counts[:3].tolist()}), "
            f"{len(only_meta)} only in cell_metadata (e.g. {only_meta[:3].tolist()}). "
            "Are both files of the same slice and replicate (S{s}R{r})?"
        )
        raise ValueError(msg)
    obs = meta.loc[ids_index]

    blank = np.array([g.lower().startswith("blank") for g in genes], dtype=bool)
    var = pd.DataFrame({"blank": blank}, index=pd.Index(genes, dtype=str))
    obsm: dict[str, object] = {"spatial": obs[["center_x", "center_y"]].to_numpy(dtype=np.float64)}
    if drop_blanks:
        obsm["blank"] = pd.DataFrame(X[:, blank].toarray(), index=ids_index, columns=var.index[blank])
        X = X[:, ~blank]
        var = var.loc[~blank]
    uns = {"source": {"cell_by_gene": files["cell_by_gene"].name, "cell_metadata": files["cell_metadata"].name}}
    adata = AnnData(X=X.tocsr(), obs=obs, var=var, obsm=obsm, uns=uns)
    logger.info("read %d cells x %d genes from %s", adata.n_obs, adata.n_vars, files["cell_by_gene"].name)
    return adata
