"""Carry a categorical annotation across an alignment by votes of the source cells where each cell lands.

Every target cell is moved by the matching (:func:`mapped`: its partners' displacement,
averaged over its 32 nearest target cells, dropped when shorter than two spacings and kept
whole from three, so that only a warp or a misplacement moves it; in a representation of
coordinates and expression only the coordinates move, the expression stays the cell's own)
and takes the label with most weight among the ``n_neighbors`` source cells nearest to where
it lands, each weighted by a Gaussian of its distance there (standard deviation 0.8
spacing). Both steps are taken in the representation the alignment
was computed on (rebuilt from its stored ``params``: the registered coordinates and, under
``use_rep="auto"``, the expression PCs with the weight the rule chose).

Why these choices, measured with ``benchmarks/recipe.py`` (the DLPFC pair both ways, its 70 %
crops from three sides, half of its spots, the MERFISH pair both ways) and on simulated warped
pairs (``hr.datasets.simulate_slices`` with a bend of 5 % and 10 % of the tissue):

- The partners' own labels, or votes of the partners of a cell's neighbours, carry the
  displacements that a one-to-one matching must make where the sections differ in density or
  extent: on a crop the partial matching moves every cell of the target by more than a spacing
  the same way, and votes that include partners fell 0.026 below the nearest source cell in
  space there, 0.011 on halves. Only the move is kept from the matching.
- A move shorter than two spacings is noise of the grid or that artefact (averaged over 32
  cells: a median of one spacing, a 90th percentile of 1.8 and 2.1 on the left crop and on
  halves); a warp is longer (6-12 spacings on the simulated pairs), and following it whole is
  what lifts the simulated pairs 0.065 and 0.14 above the nearest source cell at the cell's
  own place, as far as the partners' own labels go (shortening every move by two spacings
  instead kept only 0.05 and 0.13).
- Four weighted votes instead of one: a cell whose nearest source cell sits alone across a
  label border is outvoted by the three next ones. More votes blur thin layers.
- Where the votes split, expression has a say (:mod:`hiref.tl._label_model`): a linear
  discriminant analysis of the source's labels on the joint expression PCs, with a weight
  chosen by cross-validation on the source alone. It chose 0.05-0.2 on the DLPFC cases, where
  it moves the transfer by -0.0008 to +0.002 against votes alone (layers follow position;
  one spot's expression tells them apart poorly: the classifier alone gets 0.67-0.74 of them),
  and 0.8-1.6 on MERFISH, where it lifts the transfer from 0.823 to 0.847 and 0.831 (cell
  classes are what expression tells).

Against the nearest source cell in space (worst of seeds 0-2): +0.008 to +0.011 on six of the
nine DLPFC cases, +0.001 on halves, +0.003 on the reverse left crop, and within a few spots
either way on the forward left crop (0.8915-0.8930 against 0.8919: its 88 white-matter spots
that take layer 6 look like layer 6 in expression too, so neither position nor expression can
tell); on MERFISH 0.85 / 0.83 against 0.22 in space.

The share of the votes' weight that went to the winner is stored as a per-cell agreement (1:
every vote agrees; where expression overruled a split vote it is below one half).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hiref._anndata import check_adata, check_in_memory
from hiref._contract import check_writable, label_writes, write
from hiref._keys import ALIGN_KEY, LabelKeys
from hiref._logging import logger
from hiref.engine.checks import check_bool, check_positive_int
from hiref.engine.finish.neighbours import nearest
from hiref.get._matching import partners, stored, stored_params

if TYPE_CHECKING:
    from anndata import AnnData

#: Source cells voting for each target cell.
N_NEIGHBORS = 4
#: Standard deviation of the Gaussian weight of a vote, in spacings (see :func:`spacing`).
BANDWIDTH = 0.8
#: Target cells the matching's displacement is averaged over (see :func:`mapped`).
N_SMOOTH = 32
#: Averaged displacements shorter than this many spacings are dropped (see :func:`mapped`) ...
SHIFT_FLOOR = 2.0
#: ... and those longer than this kept whole; in between, a linear share of them.
SHIFT_FULL = 3.0


def _rebuild(
    adata1: AnnData, adata2: AnnData, params: Mapping, use_rep: object
) -> tuple[np.ndarray, np.ndarray, str, int]:
    """Both objects' arrays in the alignment's representation (or ``use_rep``), and how they were made.

    The last element is the number of leading columns that are coordinates: those of
    ``spatial_key`` under ``"auto"``, or of a ``use_rep`` whose first key is the alignment's
    ``spatial_key`` or ``"spatial"``; 0 when none is recognised.
    """
    from hiref._rep import parse_rep, representations

    from ._align import DEFAULT_SPATIAL_KEY
    from ._auto import DEFAULT_N_PCS, auto_representation

    layer = params.get("layer") or None
    seed = int(params.get("random_state", 0))
    pca = params.get("joint_pca")
    n_pcs = int(pca["n_pcs"]) if isinstance(pca, Mapping) and "n_pcs" in pca else None
    if use_rep is None:
        use_rep = params.get("use_rep")
        if use_rep is None:  # a stored matching: no representation recorded
            use_rep = params.get("spatial_key")
            if not use_rep or use_rep not in adata1.obsm or use_rep not in adata2.obsm:
                msg = (
                    "the alignment records no representation (it was stored with hr.tl.store_matching) and no "
                    "coordinates in both objects: pass `use_rep`, an .obsm key both objects have."
                )
                raise ValueError(msg)
        if use_rep == "auto":
            spatial_key = params.get("spatial_key")
            for adata, name in ((adata1, "adata1"), (adata2, "adata2")):
                if spatial_key and spatial_key not in adata.obsm:
                    msg = (
                        f"the alignment was computed on .obsm[{spatial_key!r}], which `{name}` no longer has; "
                        "restore it or pass `use_rep`."
                    )
                    raise KeyError(msg)
            weight = float(params.get("auto_weight", 1.0))
            R1, R2, _, _ = auto_representation(
                adata1, adata2, spatial_key=spatial_key or None, layer=layer, n_pcs=n_pcs, random_state=seed,
                device=None, weight=weight,
            )  # fmt: skip
            n_space = adata1.obsm[spatial_key].shape[1] if spatial_key else 0
            return R1, R2, f"the alignment's use_rep='auto' (expression weight {weight:.3g})", n_space
    R1, R2, _, _ = representations(adata1, adata2, use_rep, layer=layer, n_pcs=n_pcs or DEFAULT_N_PCS,
                                   random_state=seed)  # fmt: skip
    first = next(iter(parse_rep(use_rep, allow_auto=False).weights))
    coordinates = first in {params.get("spatial_key"), DEFAULT_SPATIAL_KEY} and first in adata1.obsm
    return R1, R2, f"use_rep={use_rep!r}", np.shape(adata1.obsm[first])[1] if coordinates else 0


def spacing(R: np.ndarray) -> float:
    """The median distance from a cell of ``R`` (shape ``(n, d)``, n >= 2) to its nearest other cell."""
    closest = nearest(R, R, 2)[:, 1]
    return float(np.median(np.linalg.norm(R - R[closest], axis=1)))


def mapped(
    R_source: np.ndarray,
    R_target: np.ndarray,
    partner: np.ndarray,
    *,
    n_space: int = 0,
    n_smooth: int = N_SMOOTH,
    floor: float = SHIFT_FLOOR,
    full: float = SHIFT_FULL,
) -> np.ndarray:
    """The target cells moved by the matching's smoothed displacement, where it is long enough to be real.

    Every matched target cell's displacement (its partner minus itself) is averaged over its
    ``n_smooth`` nearest target cells (itself included, matched ones only). An average shorter
    than ``floor`` spacings (:func:`spacing`) is dropped, one longer than ``full`` spacings kept
    whole, and in between the share ``(length - floor) / (full - floor)`` of it is kept: short
    shifts come from the grid and from the different densities or extents of the sections,
    long ones from a warp or a misplacement that the labels must follow. Where the first
    ``n_space`` columns are the coordinates, only they move (lengths in spacings of the source's
    coordinates): the other columns (expression) stay the cell's own, its identity to be
    matched; otherwise every column moves.

    Parameters
    ----------
    R_source, R_target
        The cells of both objects in one representation, shape ``(n, d)`` and ``(m, d)``.
    partner
        Position in the source of every target cell's partner (``-1``: none).
    n_space
        Leading columns that are coordinates (0: none).
    n_smooth
        Target cells each displacement is averaged over.
    floor, full
        Lengths, in spacings, below which an averaged displacement is dropped and above which
        it is kept whole (``floor < full``).

    Returns
    -------
    Array ``(m, d)``: where each target cell is looked up among the source cells.
    """
    matched = partner >= 0
    if not matched.any() or R_source.shape[0] < 2:
        return R_target
    shift = np.zeros_like(R_target, dtype=np.float64)
    shift[matched] = R_source[partner[matched]] - R_target[matched]
    near = nearest(R_target, R_target, n_smooth)
    weight = matched[near]
    smooth = (shift[near] * weight[..., None]).sum(1) / np.maximum(weight.sum(1), 1)[:, None]
    moved = slice(0, n_space or R_target.shape[1])
    smooth[:, moved.stop :] = 0.0
    unit = spacing(np.ascontiguousarray(R_source[:, moved]))
    length = np.linalg.norm(smooth, axis=1) / (unit if unit > 0 else 1.0)
    keep = np.clip((length - floor) / (full - floor), 0.0, 1.0)
    return R_target + smooth * keep[:, None]


def weighted_votes(
    R_source: np.ndarray,
    looked_up: np.ndarray,
    codes: np.ndarray,
    n_categories: int,
    n_neighbors: int,
    *,
    bandwidth: float = BANDWIDTH,
    unit: float | None = None,
) -> np.ndarray:
    """Weight of every category among the source cells nearest to each looked-up point.

    Parameters
    ----------
    R_source
        The source cells, shape ``(n, d)``.
    looked_up
        Where each target cell's votes are looked for, shape ``(m, d)`` (:func:`mapped`).
    codes
        Category of every source cell (``-1``: missing, casts no vote).
    n_categories
        Number of categories.
    n_neighbors
        Source cells voting for each point (fewer where the source has fewer cells).
    bandwidth
        Standard deviation of the Gaussian weight ``exp(-dist^2 / (2 (bandwidth * s)^2))`` of a
        vote at distance ``dist``, in spacings ``s`` of the source (:func:`spacing`; the
        weights are those of plain votes when the source has a single cell).
    unit
        The spacing ``s``, if already known (``None``: computed).

    Returns
    -------
    Array ``(m, n_categories)`` of summed weights.
    """
    m = looked_up.shape[0]
    at = np.ascontiguousarray(looked_up, dtype=R_source.dtype)
    voters = nearest(R_source, at, n_neighbors)
    dist = np.linalg.norm(R_source[voters] - at[:, None, :], axis=2)
    if unit is None:
        unit = spacing(R_source) if R_source.shape[0] > 1 else 0.0
    width = bandwidth * unit
    # Relative to the nearest voter (same shares, no underflow for a cell far from every source cell).
    excess = dist**2 - dist[:, :1] ** 2
    weight = np.exp(-0.5 * excess / width**2) if width > 0 else np.ones_like(dist)
    label = codes[voters]
    valid = label >= 0
    cell = np.broadcast_to(np.arange(m)[:, None], voters.shape)
    flat = cell[valid] * n_categories + label[valid]
    return np.bincount(flat, weights=weight[valid], minlength=m * n_categories).reshape(m, n_categories)


def _check_expression_weight(value: object) -> None:
    if isinstance(value, str) and value == "auto":
        return
    number = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not number or not np.isfinite(value) or value < 0:
        msg = f"`expression_weight` must be 'auto' or a finite number >= 0, got {value!r}."
        raise ValueError(msg)


def _expression_evidence(
    adata_source: AnnData,
    adata_target: AnnData,
    R_source: np.ndarray,
    codes: np.ndarray,
    votes: np.ndarray,
    *,
    n_neighbors: int,
    unit: float,
    weight: float | str,
    layer: str | None,
    seed: int,
) -> tuple[np.ndarray, float, dict]:
    """The scores whose largest entry is each cell's label, the expression weight used, and how it was chosen.

    The held-out votes of the cross-validation use the whole source's spacing ``unit`` (the
    folds' voters are a little sparser; computing theirs costs a neighbour search per fold).
    """
    from ._auto import joint_pcs
    from ._label_model import WEIGHTS, can_classify, choose_weight, combined, label_log_proba

    if weight == 0:
        return votes, 0.0, {"rule": "votes alone (expression_weight=0)"}
    if not can_classify(codes):
        return votes, 0.0, {"rule": "votes alone: fewer than two labels, or too few labelled cells, to learn from"}
    pcs = joint_pcs(adata_source, adata_target, layer=layer, seed=seed)
    if pcs is None:
        return votes, 0.0, {"rule": "votes alone: no shared genes to learn from"}
    E_source, E_target = (E - E.mean(0) for E in pcs)
    n = votes.shape[1]
    if weight == "auto":
        weight, accuracy = choose_weight(
            R_source,
            E_source,
            codes,
            n,
            lambda R, at, c: weighted_votes(R, at, c, n, n_neighbors, unit=unit),
            seed=seed,
        )
        record = {"rule": "5-fold cross-validation on the source's labels", "candidates": np.asarray(WEIGHTS),
                  "heldout_accuracy": np.asarray(accuracy)}  # fmt: skip
        logger.info("expression weight %.3g: held-out source labels right %.3f (votes alone %.3f)",
                    weight, max(accuracy), accuracy[0])  # fmt: skip
    else:
        weight, record = float(weight), {"rule": "given"}
    if weight == 0:
        return votes, 0.0, record
    labelled = codes >= 0
    return combined(votes, label_log_proba(E_source[labelled], codes[labelled], E_target, n), weight), weight, record


def transfer_labels(
    adata_source: AnnData,
    adata_target: AnnData,
    obs: str,
    *,
    key: str = ALIGN_KEY,
    n_neighbors: int = N_NEIGHBORS,
    expression_weight: float | str = "auto",
    use_rep: str | Mapping[str, float] | None = None,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Carry a categorical annotation from the source to every target cell by votes of its aligned neighbourhood.

    Unlike :func:`hiref.tl.transfer` (each cell takes its one partner's value), every target
    cell is moved by the matching and takes the label with most weight among the ``n_neighbors``
    source cells nearest to where it lands, in the representation the alignment was computed on.
    The move is the partners' displacement averaged over the cell's 32 nearest target cells,
    dropped below two spacings and kept whole from three: shorter shifts come from the grid and
    from the different densities or extents of the sections (a one-to-one matching onto a crop
    moves every cell the same way by about a spacing), longer ones from a warp that the labels
    must follow. In a representation of coordinates and expression (``use_rep="auto"``) only the
    coordinates move. Each vote weighs ``exp(-d^2 / (2 (0.8 s)^2))`` at distance ``d`` from the
    landing point, ``s`` the source's spacing (median distance to the nearest other cell).
    Where the votes split, a classifier of the source's labels from expression has a say
    (``expression_weight``). The result is not one-to-one: it is what to use for carrying
    annotations (cell types, layers, regions) across. On the 11 labelled cases of
    ``benchmarks/recipe.py`` (DLPFC both ways, crops, halves; MERFISH both ways) it is ahead of
    the nearest source cell in space on ten and within a few spots of it on the eleventh (see
    the module's notes and the DLPFC and MERFISH tutorials).

    Parameters
    ----------
    adata_source
        Holds the annotation ``.obs[obs]``.
    adata_target
        Receives it; aligned with ``adata_source`` under ``key`` (in either order).
    obs
        The ``.obs`` column of ``adata_source`` to carry (categorical, string or bool; missing
        values cast no vote).
    key
        The ``key_added`` of :func:`hiref.tl.align`.
    n_neighbors
        Source cells voting for each target cell.
    expression_weight
        Weight of the expression evidence against the votes: the label's score is
        ``log(vote share + 0.01) + expression_weight * log p(label | expression)``, ``p`` from a
        linear discriminant analysis of the source's labels on the joint expression PCs of the
        shared genes (each section centred on its own mean). ``"auto"``: the candidate of
        ``(0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)`` that predicts most held-out labels of the source
        in a 5-fold cross-validation on the source alone (0.05-0.2 on DLPFC layers, 0.8-1.6
        on MERFISH cell classes). ``0``: votes alone. Without shared genes, or with fewer than
        two labels, votes alone.
    use_rep
        The representation the neighbours are found in. ``None``: the alignment's own (its
        ``use_rep``, ``spatial_key``, ``layer`` and, for ``"auto"``, the expression weight it
        chose), or the coordinates for a matching stored with :func:`hiref.tl.store_matching`.
        Otherwise as in :func:`hiref.tl.align`, but not ``"auto"``.
    key_added
        Name of the written column (default ``f"{key}_{obs}"``).
    copy
        Return a modified copy of ``adata_target`` instead of writing into it.

    Returns
    -------
    ``None``, or with ``copy=True`` the modified copy of ``adata_target``. Writes on the target:

    ``.obs[key_added]``
        The transferred label (categorical, the source's categories; missing where no vote
        was cast).
    ``.obs[f"{key_added}_agreement"]``
        Share of the votes' weight that went to it (0-1; NaN where none was cast). Low values
        mark cells at label borders.
    ``.uns[key_added]``
        ``label`` (the source column), ``alignment`` (``key``), ``n_neighbors``,
        ``bandwidth`` and ``shift_floor`` (in spacings), ``representation``,
        ``expression_weight`` (the weight used), ``expression`` (how it was chosen: ``rule``
        and, under ``"auto"``, ``candidates`` and their ``heldout_accuracy``) and ``params``.

    Raises
    ------
    KeyError
        If ``obs`` is not a column of ``adata_source``, or the alignment is missing.
    ValueError
        If either object changed since the alignment, or ``key_added`` names entries that
        :func:`transfer_labels` did not write.

    Examples
    --------
    >>> import hiref as hr
    >>> a, b = hr.datasets.simulate_slices(n_obs=400, seed=0)
    >>> hr.tl.align(a, b, progress=False)
    >>> hr.tl.transfer_labels(a, b, "region")  # b.obs["hiref_region"], b.obs["hiref_region_agreement"]
    >>> float((b.obs["hiref_region"] == b.obs["region"]).mean()) > 0.9
    True
    """
    check_adata(adata_source, "adata_source")
    check_adata(adata_target, "adata_target")
    check_in_memory(adata_source, "adata_source")
    check_bool(copy, "copy")
    n_neighbors = check_positive_int(n_neighbors, "n_neighbors")
    _check_expression_weight(expression_weight)
    if not isinstance(obs, str):
        msg = f"`obs` must be the name of one .obs column of adata_source (a str), got {type(obs).__name__}."
        raise TypeError(msg)
    if obs not in adata_source.obs.columns:
        msg = f"`obs`={obs!r} is not a column of adata_source.obs (available: {list(adata_source.obs.columns)})."
        raise KeyError(msg)
    if use_rep == "auto":
        msg = "`use_rep`='auto' would choose a new expression weight: pass None to use the alignment's own."
        raise ValueError(msg)
    key_added = LabelKeys.default(key, obs).key if key_added is None else key_added
    if not isinstance(key_added, str) or not key_added:
        msg = f"`key_added` must be a non-empty str, got {key_added!r}."
        raise TypeError(msg)
    partner = partners(adata_target, adata_source, key, name="adata_target", other_name="adata_source")
    writes = label_writes(key_added)
    check_writable(adata_target, writes, "adata_target")

    source_first = stored(adata_source, key, "adata_source").get("role") != "target"
    pair = (adata_source, adata_target) if source_first else (adata_target, adata_source)
    params = stored_params(adata_source, key, "adata_source")
    R1, R2, how, n_space = _rebuild(*pair, params, use_rep)
    R_source, R_target = (np.ascontiguousarray(R, dtype=np.float64) for R in ((R1, R2) if source_first else (R2, R1)))

    values = adata_source.obs[obs]
    categorical = values if isinstance(values.dtype, pd.CategoricalDtype) else values.astype("category")
    categories = categorical.cat.categories
    codes = categorical.cat.codes.to_numpy().astype(np.int64)
    logger.info("transferring .obs[%r] to %d cells by %d weighted votes in %s", obs, adata_target.n_obs,
                n_neighbors, how)  # fmt: skip
    looked_up = mapped(R_source, R_target, partner, n_space=n_space)
    unit = spacing(R_source) if R_source.shape[0] > 1 else 0.0
    votes = weighted_votes(R_source, looked_up, codes, len(categories), n_neighbors, unit=unit)
    scores, weight, expression = _expression_evidence(
        adata_source, adata_target, R_source, codes, votes, n_neighbors=n_neighbors, unit=unit,
        weight=expression_weight, layer=params.get("layer") or None, seed=int(params.get("random_state", 0)),
    )  # fmt: skip
    total = votes.sum(1)
    winner = scores.argmax(1)
    cast = total > 0
    label = pd.Categorical.from_codes(np.where(cast, winner, -1), categories=categories)
    agreement = np.full(adata_target.n_obs, np.nan)
    agreement[cast] = votes[cast, winner[cast]] / total[cast]

    out = adata_target.copy() if copy else adata_target
    keys = LabelKeys(key_added)
    record = {"label": obs, "alignment": key, "n_neighbors": n_neighbors, "bandwidth": BANDWIDTH,
              "shift_floor": SHIFT_FLOOR, "representation": how, "expression_weight": weight,
              "expression": expression}  # fmt: skip
    write(out, writes, record=record, params={"obs": obs, "key": key, "n_neighbors": n_neighbors,
                                              "expression_weight": expression_weight,
                                              "use_rep": "alignment" if use_rep is None else use_rep},
          obs={keys.obs: pd.Series(label, index=out.obs_names), keys.agreement: agreement})  # fmt: skip
    return out if copy else None
