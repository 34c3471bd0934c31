"""Readers of the small real slices kept next to the repository (``../shared/data``), from a folder given to them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anndata import AnnData

ENV_VAR = "HIREF_SHARED_DATA"

MERFISH_BREGMAS = (0.26, 0.21)
PASTE_SLICES = (1, 2, 3, 4)


def _merfish_file(bregma: float) -> str:
    return f"merfish_hypothalamus_bregma{bregma:.2f}.h5ad"


def _paste_file(slice_: int) -> str:
    return f"paste_breast_slice{slice_}.h5ad"


ALL_FILES = tuple(_merfish_file(b) for b in MERFISH_BREGMAS) + tuple(_paste_file(s) for s in PASTE_SLICES)


def _as_list(value: object) -> list[object]:
    """A single value as a one-element list; a sequence (not a string) as a list."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def shared_data_dir(data_dir: str | os.PathLike[str] | None, files: Sequence[str]) -> Path:
    """The folder holding ``files``: ``data_dir`` if given, else ``$HIREF_SHARED_DATA``.

    The package does not search the file system for them; the tests and tutorials pass the
    folder (or set the variable) themselves.
    """
    expected = ", ".join(ALL_FILES)
    how = (
        f"Pass `data_dir=` or set the environment variable {ENV_VAR} to the folder that holds the real test "
        f"slices ({expected}); see ../shared/data/README.md for what they are."
    )
    if data_dir is None and not os.environ.get(ENV_VAR):
        msg = f"Could not find {', '.join(files)}: no `data_dir` given and {ENV_VAR} is not set. {how}"
        raise FileNotFoundError(msg)
    source = "`data_dir`" if data_dir is not None else f"${ENV_VAR}"
    folder = Path(data_dir if data_dir is not None else os.environ[ENV_VAR]).expanduser()
    if not folder.is_dir():
        msg = f"{source} = {str(folder)!r} is not a folder. {how}"
        raise FileNotFoundError(msg)
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        msg = f"{source} = {str(folder)!r} lacks {', '.join(missing)}. {how}"
        raise FileNotFoundError(msg)
    return folder


def _read_slice(path: Path) -> AnnData:
    import anndata as ad

    adata = ad.read_h5ad(path)
    if not adata.obs_names.is_unique:
        adata.obs_names_make_unique()
    if "spatial" not in adata.obsm:
        msg = f"{str(path)!r} has no `obsm['spatial']`; is it one of the hiref real test slices?"
        raise ValueError(msg)
    return adata


def _pick_bregma(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real | str):
        msg = f"`bregma` must be a number (or a sequence of numbers) among {MERFISH_BREGMAS}, got {value!r}."
        raise TypeError(msg)
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    for b in MERFISH_BREGMAS:
        if abs(number - b) < 1e-6:
            return b
    msg = f"Unknown `bregma` {value!r}: the shared MERFISH slices are at Bregma {MERFISH_BREGMAS} (mm)."
    raise ValueError(msg)


def _pick_slice(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        msg = f"`slices` must be an int (or a sequence of ints) among {PASTE_SLICES}, got {value!r}."
        raise TypeError(msg)
    if int(value) not in PASTE_SLICES:
        msg = f"Unknown slice {value!r}: the shared PASTE breast-cancer slices are {PASTE_SLICES}."
        raise ValueError(msg)
    return int(value)


def merfish_hypothalamus(
    bregma: float | str | Sequence[float | str] = MERFISH_BREGMAS,
    *,
    data_dir: str | os.PathLike[str] | None = None,
) -> list[AnnData]:
    """Adjacent MERFISH sections of the mouse hypothalamic preoptic region (Moffitt et al. 2018).

    Two real sections of one animal (animal 1, female, naive) of Moffitt et al. (2018), 50 µm
    apart, as shipped in ``../shared/data`` (taken from Banksy's ``hypothalamus.rda``; see the
    README there for the provenance): Bregma +0.26 mm (5,584 cells) and +0.21 mm (5,578 cells),
    161 genes each. A small, real pair for tests and tutorials that needs no download.

    The folder is ``data_dir`` if given, else ``$HIREF_SHARED_DATA`` (the package searches no
    other place).

    Parameters
    ----------
    bregma
        Section(s) to read, by Bregma position in mm: ``0.26``, ``0.21`` or a sequence of them.
        A single value still returns a list.
    data_dir
        Folder holding the ``merfish_hypothalamus_bregma{0.26,0.21}.h5ad`` files.

    Returns
    -------
    One fresh :class:`~anndata.AnnData` per requested section, in the order asked, with

    - ``.X``: sparse float32 expression, normalised by cell volume as Moffitt et al. released it (not integer counts);
    - ``.obsm["spatial"]``: centred x, y in µm (float64);
    - ``.obs``: ``cell_class`` (16 classes), ``neuron_cluster_id`` (``NA`` for non-neurons),
      ``animal_id``, ``animal_sex``, ``behavior``, ``bregma`` and ``banksy_cell_id``
      (categorical); ``obs_names`` are Moffitt's cell UUIDs;
    - ``.uns["source"]``: provenance.

    Examples
    --------
    >>> import hiref as hr
    >>> a, b = hr.datasets.merfish_hypothalamus()  # doctest: +SKIP
    >>> a.shape, b.shape  # doctest: +SKIP
    ((5584, 161), (5578, 161))
    """
    picked = [_pick_bregma(v) for v in _as_list(bregma)]
    if not picked:
        msg = f"`bregma` is empty; pick among {MERFISH_BREGMAS}."
        raise ValueError(msg)
    files = [_merfish_file(b) for b in picked]
    folder = shared_data_dir(data_dir, files)
    return [_read_slice(folder / f) for f in files]


def paste_breast(
    slices: int | Sequence[int] = PASTE_SLICES,
    *,
    data_dir: str | os.PathLike[str] | None = None,
) -> list[AnnData]:
    """Consecutive Spatial Transcriptomics sections of a breast-cancer biopsy (PASTE sample data).

    Four real sections (100 µm spots) of Ståhl et al. (2016) as shipped in PASTE's sample data
    and kept in ``../shared/data`` (see the README there): 254, 251, 264 and 262 spots with
    7,998, 7,713, 7,453 and 7,571 genes. Slices 1 and 2 are the pair of PASTE's own tutorial.
    Note that the gene sets differ between slices: intersect them before aligning on expression.

    The folder is ``data_dir`` if given, else ``$HIREF_SHARED_DATA``.

    Parameters
    ----------
    slices
        Slice number(s) among 1, 2, 3, 4. A single value still returns a list.
    data_dir
        Folder holding the ``paste_breast_slice{1..4}.h5ad`` files.

    Returns
    -------
    One fresh :class:`~anndata.AnnData` per requested slice, in the order asked, with

    - ``.X``: raw integer UMI counts (sparse float32);
    - ``.obsm["spatial"]``: the array coordinates of the spots (float64);
    - ``.obs["slice"]``: the slice (the only obs column); ``obs_names`` are the original
      ``"XxY"`` position strings (e.g. ``"13.064x6.086"``), so the same name can occur in two slices;
    - ``.uns["source"]``: provenance.

    Examples
    --------
    >>> import hiref as hr
    >>> (s2,) = hr.datasets.paste_breast(2)  # doctest: +SKIP
    >>> s2.shape  # doctest: +SKIP
    (251, 7713)
    """
    picked = [_pick_slice(v) for v in _as_list(slices)]
    if not picked:
        msg = f"`slices` is empty; pick among {PASTE_SLICES}."
        raise ValueError(msg)
    files = [_paste_file(s) for s in picked]
    folder = shared_data_dir(data_dir, files)
    return [_read_slice(folder / f) for f in files]
