"""``hr.tl.align``: match the cells of two AnnData objects and store the matching in both."""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hiref._anndata import check_adata, check_in_memory, obsm_array
from hiref._contract import Writes, alignment_writes, check_all_writable, write
from hiref._docs import DOC, doc_params
from hiref._keys import ALIGN_KEY, Keys
from hiref._logging import logger
from hiref._rep import Rep, parse_rep, representations
from hiref._spatialdata import call as spatialdata_call
from hiref._spatialdata import given as spatialdata_given
from hiref._version import __version__
from hiref.engine import Matching, SolveOptions, solve
from hiref.engine.certify import describe_bound
from hiref.engine.checks import check_bool, check_positive_int, check_seed
from hiref.engine.distributed import this_process_rows

from ._auto import DEFAULT_N_PCS, auto_representation
from ._confidence import matched_cost, neighbours, spatial_confidence
from ._doubt import doubt_summary

if TYPE_CHECKING:
    from anndata import AnnData

#: The default ``spatial_key``: missing from both objects it is a warning (an explicit key, an error).
DEFAULT_SPATIAL_KEY = "spatial"


@dataclass(frozen=True)
class AlignRequest:
    """The options of one :func:`align` call, checked and parsed once (see :meth:`from_options`)."""

    rep: Rep
    spatial_key: str | None
    key_added: str
    layer: str | None
    n_pcs: int | None
    random_state: int
    n_pcs_asked: int | None
    device: str | None
    progress: bool
    solver: SolveOptions
    distributed: object

    @classmethod
    def from_options(cls, **options: Any) -> AlignRequest:
        """Check and parse the keyword options of :func:`align` (its signature gives the defaults)."""
        bound = inspect.signature(align).bind(None, None, **options)
        bound.apply_defaults()
        given = dict(bound.arguments)
        engine_options = dict(given.pop("engine_options"))
        for name in ("adata1", "adata2", "copy", "table_key", "coordinate_system"):
            given.pop(name)
        distributed = engine_options.pop("distributed", False)
        random_state = given["random_state"]
        if distributed is not False and (random_state is None or isinstance(random_state, np.random.Generator)):
            msg = "`random_state` must be an int in a distributed run (every process needs the same seed)."
            raise TypeError(msg)
        key_added = given["key_added"]
        if not isinstance(key_added, str) or not key_added:
            msg = f"`key_added` must be a non-empty string, got {key_added!r}."
            raise ValueError(msg)
        rep = parse_rep(given["use_rep"])
        n_pcs = given["n_pcs"]
        n_pcs_asked = None if n_pcs is None else check_positive_int(n_pcs, "n_pcs")
        if n_pcs is None and not rep.auto:
            n_pcs = DEFAULT_N_PCS
        if n_pcs is not None:  # None with "auto": its own rule
            n_pcs = check_positive_int(n_pcs, "n_pcs")
        return cls(
            rep=rep, spatial_key=given["spatial_key"], key_added=key_added, layer=given["layer"], n_pcs=n_pcs,
            random_state=check_seed(random_state, "random_state"), n_pcs_asked=n_pcs_asked, device=given["device"],
            progress=check_bool(given["progress"], "progress"),
            solver=SolveOptions.make(given["solver"], **engine_options), distributed=distributed,
        )  # fmt: skip

    def writes(self, adata1: AnnData, adata2: AnnData) -> Writes:
        """What the alignment will write on each object (the same names on both)."""
        return alignment_writes(
            self.key_added, spatial=_both_have(adata1, adata2, self.spatial_key),
            pca=self.rep.joint_pca(adata1, adata2), quality=self.distributed is False,
        )  # fmt: skip


@dataclass
class AlignedSide:
    """What an alignment writes on one object (computed before anything is written)."""

    writes: Writes
    record: dict
    params: dict
    obs: dict[str, object]
    obsm: dict[str, np.ndarray]

    @property
    def column(self) -> pd.Categorical:
        """The partners' obs names (``.obs[f"{key_added}_match"]``)."""
        return self.obs[Keys(self.writes.key).match]


def _both_have(adata1: AnnData, adata2: AnnData, spatial_key: str | None) -> bool:
    return spatial_key is not None and spatial_key in adata1.obsm and spatial_key in adata2.obsm


def _side(
    matching_perm: np.ndarray,
    labels: list[np.ndarray],
    other: AnnData,
    *,
    writes: Writes,
    params: dict,
    results: dict,
    role: str,
    spatial: np.ndarray | None,
    pca: np.ndarray | None,
) -> AlignedSide:
    """Everything to write on one object: its ``uns`` record, ``obs`` columns and ``obsm`` arrays."""
    keys = Keys(writes.key)
    matched = matching_perm >= 0
    obsm: dict[str, np.ndarray] = {}
    if labels:
        obsm[keys.labels] = np.stack(labels, 1).astype(np.int64)
    if spatial is not None:
        partner = np.full((len(matching_perm), spatial.shape[1]), np.nan)
        partner[matched] = spatial[matching_perm[matched]]
        obsm[keys.partner_spatial] = partner
    if pca is not None:
        obsm[keys.pca] = np.asarray(pca, dtype=np.float32)
    record = {"role": role, "partner": matching_perm.astype(np.int64), "obs_key": keys.match, **results}
    obs = {keys.match: partner_column(matching_perm, other.obs_names)}
    return AlignedSide(writes, record, params, obs, obsm)


def partner_column(perm: np.ndarray, other_names: pd.Index) -> pd.Categorical:
    """The partners' obs names as a categorical (missing where ``perm`` is -1).

    Built from integer codes (categories: the partners' names in their order in the other
    object), which takes a third of the time of hashing a million strings; other objects with
    duplicate obs names fall back to the strings. The partners' positions are ranked with a
    mask over the other object's cells (linear time, no sort).
    """
    matched = perm >= 0
    if not other_names.is_unique:
        names = other_names.to_numpy()[np.maximum(perm, 0)]
        return pd.Categorical(np.where(matched, names, None))
    hit = perm[matched]
    used = np.zeros(len(other_names), dtype=bool)
    used[hit] = True
    rank = np.cumsum(used) - 1  # position of every used partner among the used ones, in order
    codes = np.full(perm.shape[0], -1, dtype=np.int64)
    codes[matched] = rank[hit]
    return pd.Categorical.from_codes(codes, categories=other_names[np.flatnonzero(used)].astype(str))


def write_alignment(adata: AnnData, side: AlignedSide) -> None:
    """Write one side of an alignment into ``adata`` through the contract (see :func:`hiref._contract.write`)."""
    write(adata, side.writes, record=side.record, params=side.params, obs=side.obs, obsm=side.obsm)


def check_pair(adata1: AnnData, adata2: AnnData, key_added: object) -> None:
    """Both objects are in-memory AnnData, not one object twice, and ``key_added`` is a non-empty string."""
    check_adata(adata1, "adata1")
    check_adata(adata2, "adata2")
    if adata1 is adata2:
        msg = (
            "`adata1` and `adata2` are the same object: an alignment stores a role and partners on each, so it "
            "needs two objects. To match a dataset with itself, pass `adata.copy()` as `adata2`."
        )
        raise ValueError(msg)
    check_in_memory(adata1, "adata1")
    check_in_memory(adata2, "adata2")
    for name, adata in (("adata1", adata1), ("adata2", adata2)):
        if adata.n_obs < 2:
            msg = (
                f"`{name}` has a single cell; an alignment needs at least 2 in each object (its confidence "
                "and quality columns compare every cell with its neighbours)."
            )
            raise ValueError(msg)
    if not isinstance(key_added, str) or not key_added:
        msg = f"`key_added` must be a non-empty string, got {key_added!r}."
        raise ValueError(msg)


def check_spatial_key(adata1: AnnData, adata2: AnnData, request: AlignRequest) -> None:
    """Refuse coordinates missing where they were asked for; warn when the default key is in neither object.

    An explicit ``spatial_key`` must be in both objects, and any key in one object only is an
    error (the confidence and partner coordinates need both). The default ``"spatial"`` in
    neither object leaves ``"auto"`` on expression alone: a warning says so (``spatial_key=None``
    asks for that without one).
    """
    key = request.spatial_key
    if key is None:
        return
    if not isinstance(key, str):
        msg = f"`spatial_key` must be an .obsm key (str) or None, got {key!r}."
        raise TypeError(msg)
    has = [key in adata1.obsm, key in adata2.obsm]
    if all(has):
        return
    available = {name: sorted(a.obsm.keys()) for name, a in (("adata1", adata1), ("adata2", adata2))}
    if any(has):
        missing = "adata2" if has[0] else "adata1"
        msg = (
            f"`spatial_key`={key!r} is in one object only: `{missing}` has no .obsm[{key!r}] (available: "
            f"{available[missing] or 'none'}). Give both objects coordinates under one key, or pass "
            "`spatial_key=None` to align without coordinates."
        )
        raise KeyError(msg)
    if key != DEFAULT_SPATIAL_KEY:
        msg = (
            f"`spatial_key`={key!r} is in neither object (adata1 has {available['adata1'] or 'no .obsm'}, adata2 "
            f"has {available['adata2'] or 'no .obsm'}); pass the key of the coordinates, or `spatial_key=None`."
        )
        raise KeyError(msg)
    if request.rep.auto:
        msg = (
            f"neither object has .obsm[{key!r}], so `use_rep='auto'` aligns on expression PCs alone and no "
            f"`{Keys(request.key_added).confidence}` or `{Keys(request.key_added).partner_spatial}` is written. "
            "Pass `spatial_key=` naming the coordinates, or `spatial_key=None` to align on expression alone "
            "without this warning."
        )
        warnings.warn(msg, UserWarning, stacklevel=4)


def _warn_capped_pcs(rep_info: dict, request: AlignRequest) -> None:
    """Say so when the joint PCA had fewer PCs to give than ``n_pcs`` asked for."""
    pca = rep_info.get("joint_pca") or {}
    asked, used = request.n_pcs_asked, pca.get("n_pcs")
    if asked is None or used is None or used >= asked:
        return
    cells = pca.get("fitted_on_cells")
    msg = (
        f"`n_pcs`={asked} is more than the joint PCA can give: {pca.get('n_shared_genes')} shared genes"
        + (f" and {cells} cells fitted" if cells else "")
        + f" allow at most {used} PCs, so {used} were computed."
    )
    warnings.warn(msg, UserWarning, stacklevel=4)


def _spatial_pair(
    adata1: AnnData, adata2: AnnData, spatial_key: str | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Both objects' coordinates, or ``(None, None)`` unless both have ``spatial_key``."""
    if not _both_have(adata1, adata2, spatial_key):
        return None, None
    spatial1 = obsm_array(adata1, spatial_key, "adata1")
    spatial2 = obsm_array(adata2, spatial_key, "adata2")
    if spatial1.shape[1] != spatial2.shape[1]:
        msg = (
            f"`.obsm[{spatial_key!r}]` has {spatial1.shape[1]} columns in adata1 but {spatial2.shape[1]} in "
            "adata2; pass `spatial_key=None` or fix the coordinates."
        )
        raise ValueError(msg)
    return spatial1, spatial2


def _params(rep_info: dict, matching: Matching, request: AlignRequest, *, spatial_key: str | None) -> dict:
    """The ``params`` of an alignment (recorded through :func:`hiref._params.params_record` by the contract).

    ``engine_options`` holds the solver options that differ from their defaults, other than
    ``cost``, ``unbalanced`` and ``refine``, which have entries of their own.
    """
    solver = request.solver
    engine_options = {k: v for k, v in solver.changed().items() if k not in ("cost", "unbalanced", "refine")}
    return {
        **rep_info,
        "cost": matching.cost_name,
        "unbalanced": solver.unbalanced,
        "refine": "auto" if solver.refine is None else bool(solver.refine),
        "random_state": int(request.random_state),
        "schedule": np.asarray(matching.schedule, dtype=np.int64),
        "spatial_key": spatial_key,
        "layer": request.layer,
        "engine_options": engine_options,
        "hiref_version": __version__,
    }


def _add_quality(
    side: AlignedSide,
    perm: np.ndarray,
    reps: tuple[np.ndarray, np.ndarray],
    coords: tuple[np.ndarray | None, np.ndarray | None],
    *,
    root: bool,
    knn: tuple | None,
) -> None:
    """Add the per-cell cost and, with coordinates, the spatial confidence to one side's ``obs``."""
    keys = Keys(side.writes.key)
    side.obs.update({keys.cost: matched_cost(*reps, perm, root=root)})
    if coords[0] is not None:
        side.obs.update({keys.confidence: spatial_confidence(*coords, perm, knn=knn)})


def _represent(adata1: AnnData, adata2: AnnData, request: AlignRequest) -> tuple:
    """The arrays to align, their description for ``params``, and a joint PCA if one was computed."""
    if request.rep.auto:
        return auto_representation(
            adata1, adata2, spatial_key=request.spatial_key, layer=request.layer, n_pcs=request.n_pcs,
            random_state=request.random_state, device=request.device,
        )  # fmt: skip
    return representations(
        adata1, adata2, request.rep, layer=request.layer, n_pcs=request.n_pcs, random_state=request.random_state
    )


def check_alignment_writable(adata1: AnnData, adata2: AnnData, request: AlignRequest) -> None:
    """Refuse the alignment before computing if it would overwrite entries hiref did not write."""
    writes = request.writes(adata1, adata2)
    check_all_writable([(adata1, writes, "adata1"), (adata2, writes, "adata2")])


def compute_alignment(
    adata1: AnnData, adata2: AnnData, request: AlignRequest, *, check: bool = True
) -> tuple[AlignedSide, AlignedSide]:
    """Check, solve and prepare both sides of an alignment; writes nothing (see :func:`align`).

    ``check=False`` skips the ownership check (for objects that are the caller's own copies).
    """
    t0 = time.perf_counter()
    check_pair(adata1, adata2, request.key_added)
    check_spatial_key(adata1, adata2, request)
    if check:
        check_alignment_writable(adata1, adata2, request)
    writes = request.writes(adata1, adata2)
    logger.info("aligning %d and %d cells by %s", adata1.n_obs, adata2.n_obs, request.rep.recorded)
    R1, R2, rep_info, pca = _represent(adata1, adata2, request)
    _warn_capped_pcs(rep_info, request)
    spatial1, spatial2 = _spatial_pair(adata1, adata2, request.spatial_key)
    # Every process holds both objects; the engine takes each process's slice of the rows.
    distributed, (R1, R2) = this_process_rows(R1, R2, distributed=request.distributed)
    matching: Matching = solve(R1, R2, request.solver, seed=request.random_state, device=request.device,
                               progress=request.progress, distributed=distributed)  # fmt: skip
    runtime = time.perf_counter() - t0
    params = _params(rep_info, matching, request, spatial_key=request.spatial_key if spatial1 is not None else None)
    results = {
        "cost": float(matching.cost),
        "level_costs": np.asarray(matching.level_costs, dtype=np.float64),
        "n_matched": int(matching.n_matched),
        "runtime": float(runtime),
        # The certificate (NaN where none was computed): the optimum is at least lower_bound,
        # so the matching is at most gap_bound (relative) above it.
        "lower_bound": float("nan") if matching.lower_bound is None else float(matching.lower_bound),
        "gap_bound": float("nan") if matching.gap_bound is None else float(matching.gap_bound),
    }
    side1 = _side(matching.perm, matching.labels_x, adata2, writes=writes, params=params, results=results,
                  role="source", spatial=spatial2, pca=None if pca is None else pca[0])  # fmt: skip
    side2 = _side(matching.perm_y, matching.labels_y, adata1, writes=writes, params=params, results=results,
                  role="target", spatial=spatial1, pca=None if pca is None else pca[1])  # fmt: skip
    if distributed is False:
        root = matching.cost_name == "euclidean"
        knn = None if spatial1 is None else (neighbours(spatial1), neighbours(spatial2))
        _add_quality(side1, matching.perm, (R1, R2), (spatial1, spatial2), root=root, knn=knn)
        _add_quality(side2, matching.perm_y, (R2, R1), (spatial2, spatial1), root=root, knn=knn and knn[::-1])
        if spatial1 is not None:
            confidence = Keys(writes.key).confidence
            doubt = doubt_summary(adata1, adata2, (side1.obs[confidence], side2.obs[confidence]), matching.perm_y,
                                  knn[1][1][:, 0], layer=request.layer, seed=request.random_state)  # fmt: skip
            side1.record["doubt"] = side2.record["doubt"] = doubt
    logger.info(
        "finished (%.1f s): matched %d pairs, cost %.6g, %s; adding .uns[%r], .obs%s, .obsm%s",
        runtime, matching.n_matched, matching.cost, describe_bound(matching.gap_bound), writes.uns, list(side1.obs),
        sorted(side1.obsm),
    )  # fmt: skip
    return side1, side2


@doc_params(**DOC)
def align(
    adata1: AnnData,
    adata2: AnnData,
    *,
    use_rep: str | Mapping[str, float] = "auto",
    spatial_key: str | None = "spatial",
    key_added: str = ALIGN_KEY,
    layer: str | None = None,
    n_pcs: int | None = None,
    random_state: int | np.random.Generator | None = 0,
    device: str | None = None,
    progress: bool = True,
    solver: SolveOptions | Mapping[str, Any] | None = None,
    copy: bool = False,
    table_key: str | list[str] | None = None,
    coordinate_system: str = "global",
    **engine_options: Any,
) -> tuple[AnnData, AnnData] | None:
    """Match the cells of two datasets one to one by Hierarchical Refinement.

    Every cell of the smaller dataset gets exactly one partner in the other (all cells, when
    both have the same size); see ``unbalanced`` for the rest. The matching is computed by
    :func:`hiref.solve` on the chosen representation and stored on both objects, so each
    stands alone and survives ``write_h5ad``/``read_h5ad``.

    The default ``use_rep="auto"`` is the recipe for sections of one tissue in one frame (after
    :func:`hiref.pp.register`): standardised coordinates next to expression PCs (a joint PCA
    of the shared genes, fitted on at most 2,000 cells), the PCs weighted by
    ``w = min(1, ((1 - rho) / rho) ** 2)``, tapered to 0 between ``rho`` 0.7 and 0.8. ``rho``
    is measured on at most 2,000 cells per object: the genes are split in two halves, cells are
    matched by position alone and by the first half's PCs alone, and ``rho`` is the share of
    expression's gain over a random matching, in predicting the second half's PCs from the
    partner, that position already gets. Where neighbouring cells look alike (adjacent Visium
    sections, ``rho`` 0.8-0.93) position alone decides: there every expression weight measured
    lost layer accuracy; where position tells little about a cell (single-cell MERFISH
    sections, ``rho`` about 0.2) expression gets at most an equal say, so partners stay
    spatially plausible. Only the leading PCs are kept: the fewest whose dropped variance is at
    most 0.5 % of the whole representation's, and no more than fit in 16 dimensions in all (the
    engine's fast finish) where that drops at most 2 %; so a small weight means few dimensions
    (none on DLPFC) and a fast finish.
    With coordinates in both objects, every alignment also stores a label-free verdict in
    ``.uns[key_added]["doubt"]``: how alike partners are in expression, as a share of how alike
    spatial neighbours are (``partner_similarity``, 0.4-0.9 on sections in one frame, near or
    below 0 on a mirrored section left unregistered), and ``verdict`` (``"doubtful"`` below 0.25,
    with a WARNING log; ``"sound"``; or ``"not judged"`` without shared genes).
    Without coordinates in both objects ``"auto"`` is expression alone, the recipe for time courses and atlases (or pass
    ``use_rep="X_pca"``).

    **What to pass.** Two AnnData objects in memory, cells as rows, with unique ``obs_names``:

    - *Expression* (``.X``, or ``layer``): raw counts or log-normalised values both work; pass
      what you have, no need to normalise first. Only the genes both objects share (by
      ``var_names``) are used. hiref prepares its own copy, never your data: non-negative
      integers (raw counts) are normalised to 10,000 per cell and log1p-transformed (as
      ``sc.pp.normalize_total(target_sum=1e4)`` then ``sc.pp.log1p``); non-negative
      non-integer values above 20 (e.g. counts normalised by cell volume) are log1p-transformed;
      anything else (log-normalised or scaled data) is used as is.
      ``.uns[key_added]["params"]`` records the steps taken (``"preprocessing"``).
    - *PCs*: with ``.obsm["X_pca"]`` in both objects (computed on both together, e.g.
      ``sc.pp.pca`` of the concatenated objects), those are used instead of a joint PCA.
    - *Coordinates*: ``.obsm[spatial_key]``, two (or more) numeric columns per cell, in both
      objects and in one frame (run :func:`hiref.pp.register` first and pass
      ``spatial_key="spatial_registered"``). Any unit (pixels, µm): ``"auto"`` standardises
      them; stored partner coordinates, costs of ``use_rep="spatial"`` and plots are in the
      units given. A DataFrame of text, even numeric text, is refused.

    Parameters
    ----------
    {adata_pair}
    {use_rep}
    {spatial_key}
    {key_added}
    {layer}
    n_pcs
        Number of PCs of a joint PCA computed for a missing ``"X_pca"``; ``None``: 50, and for
        ``"auto"`` one per 20 cells the PCA is fitted on (at most 2,000), at most 100, of which
        it keeps only the leading PCs that matter at its expression weight.
    {random_state}
    {device}
    progress
        Show progress bars.
    solver
        The engine's options, a :class:`~hiref.engine.SolveOptions` or a dict of its fields
        (see :func:`hiref.solve`); ``None``: the defaults. Any of them may also be passed as a
        keyword (below), which wins over ``solver``.
    {copy}
    {spatialdata}
    **engine_options
        Solver options by name, e.g. ``cost="euclidean"`` (the ground cost on the
        representation), ``unbalanced="subsample"`` (with different numbers of cells, leave
        out random cells instead of those the transport leaves out), ``refine=True`` (exact
        re-solves over windows of neighbouring pairs; by default above 16 dimensions),
        ``polish=False`` (skip the exact polish on a sparse graph of candidate partners, on by
        default up to 2**23 cells in low dimensions), ``leaf_size``, ``schedule``, ``n_starts``; unknown names
        raise a :class:`TypeError` listing the valid ones. With ``distributed=True`` (under
        ``torchrun``), every process calls ``align`` on the same two objects, the engine works
        on each process's slice of the cells, and every process stores the same whole
        alignment (write the results from rank 0 only); see the docs' "Distributed runs" page.

    Returns
    -------
    ``None``, or with ``copy=True`` the modified copies ``(adata1, adata2)``. On each object:

    ``.uns[key_added]``
        ``params`` (``use_rep``, ``cost``, ``unbalanced``, ``refine``, ``random_state``,
        ``schedule``, ``hiref_version``, with ``"auto"`` also ``auto_weight`` and ``auto``: a
        JSON string of the rule's measurements, ...; stored by one rule for all tools, dicts as
        JSON strings and ``None`` as ``""``), ``role`` (``"source"`` on adata1, ``"target"``
        on adata2), ``partner`` (int64 position of every cell's partner in the other object,
        ``-1`` if unmatched), ``cost`` (mean cost of the matched pairs), ``lower_bound`` (a
        proven lower bound on the optimal mean cost of any one-to-one matching of the two
        representations, from the engine's dual solution) and ``gap_bound`` (``(cost -
        lower_bound) / lower_bound``: the matching is at most this far above the optimum; both
        NaN where no bound was computed), ``level_costs``, ``n_matched``, ``runtime`` (s), and
        the names of the entries below.
    ``.obs[f"{{key_added}}_match"]``
        The partner's obs name (missing if unmatched); the only place partner names are
        stored, so that ``hr.get.matching`` can tell a subset or reordered object.
    ``.obs[f"{{key_added}}_cost"]``
        The cost of the cell's pair: its squared Euclidean distance to its partner on the
        aligned representation (the distance for ``cost="euclidean"``); NaN if unmatched.
    ``.obs[f"{{key_added}}_confidence"]``
        With coordinates: the share of the cell's 8 nearest neighbours whose partners lie
        within twice the typical 8-neighbour radius of its own partner (1: its neighbourhood
        moved together; low: a doubtful partner). NaN if unmatched.
    ``.obsm[f"{{key_added}}_labels"]``
        Co-cluster of every cell at every level of the hierarchy (equal on both objects for
        cells of one co-cluster).
    ``.obsm[f"{{key_added}}_partner_spatial"]``
        The partner's ``.obsm[spatial_key]`` coordinates (NaN if unmatched), when both objects
        have them.
    ``.obsm[f"{{key_added}}_pca"]``
        Only if a joint PCA was computed: for ``use_rep="X_pca"`` its PCs, for ``"auto"`` the
        PCs it kept (float32).

    Examples
    --------
    >>> import hiref as hr
    >>> a, b = hr.datasets.simulate_slices(n_obs=500, seed=0)
    >>> hr.tl.align(a, b, use_rep="spatial", progress=False)
    >>> a.obs["hiref_match"].iloc[0] == b.obs_names[a.uns["hiref"]["partner"][0]]
    True
    """
    if spatialdata_given(adata1, adata2):
        return spatialdata_call(align, locals())
    check_bool(copy, "copy")
    check_pair(adata1, adata2, key_added)
    request = AlignRequest.from_options(
        use_rep=use_rep, spatial_key=spatial_key, key_added=key_added, layer=layer, n_pcs=n_pcs,
        random_state=random_state, device=device, progress=progress, solver=solver, **engine_options,
    )  # fmt: skip
    sides = compute_alignment(adata1, adata2, request)
    if copy:
        adata1, adata2 = adata1.copy(), adata2.copy()
    write_alignment(adata1, sides[0])
    write_alignment(adata2, sides[1])
    return (adata1, adata2) if copy else None
