"""A label-free verdict on an alignment: are partners as alike in expression as neighbours are.

For the cells of ``adata2``, the expression (a joint PCA of the shared genes, preprocessed as
for ``use_rep="auto"``) of each cell's partner is compared with its own, against a random
pairing (the chance level) and against the cell's nearest spatial neighbour in its own section
(what one section of the tissue predicts of itself): ``partner_similarity = gain(partners) /
gain(neighbours)``, each gain ``1 - mean squared difference / chance``. Measured on matchings
led by position: 0.86-0.89 on the DLPFC pair (both directions, a 70 % crop, half of its spots),
0.43 on MERFISH, 0.47 and 0.80 on two breast pairs; a section mirrored and not registered gives
-0.17 (DLPFC) and 0.02 (MERFISH), and the breast sections 2 and 3, which are not in one frame as
shipped, -0.44. Matchings led by expression choose partners for it and score above 0.8 (1.0-2.2
on MERFISH and the breast sections); there the verdict says that partners are alike, not that
they lie in the right place (a mirrored DLPFC section under ``use_rep="auto"``, whose rule then
sees position predict little and lets expression lead: 0.82). Below :data:`DOUBTFUL_SIMILARITY` the
alignment is called doubtful and a WARNING log says so (shown in Jupyter and scripts
without any logging set up, as :func:`hiref.pp.register`'s warnings are).

The share of cells with a low spatial confidence is reported too; it does not tell a mirrored
section (a reflection is a smooth map: 0.2 % low on DLPFC mirrored) from a sound one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hiref._logging import logger

from ._auto import joint_pcs

if TYPE_CHECKING:
    from anndata import AnnData

#: Below this ``partner_similarity`` an alignment is called doubtful.
DOUBTFUL_SIMILARITY = 0.25
#: A cell's spatial confidence below this counts towards ``low_confidence_share``.
LOW_CONFIDENCE = 0.5


def _gain(E: np.ndarray, F: np.ndarray, chance: float) -> float:
    return float(1.0 - ((E - F) ** 2).sum(1).mean() / chance) if chance > 0 else float("nan")


def partner_similarity(E1: np.ndarray, E2: np.ndarray, partner_of_2: np.ndarray, nearest_in_2: np.ndarray) -> float:
    """How alike partners are in expression, as a share of how alike spatial neighbours are.

    Parameters
    ----------
    E1, E2
        Expression PCs of both objects.
    partner_of_2
        For every cell of the second object, its partner in the first (``-1``: none).
    nearest_in_2
        For every cell of the second object, its nearest other cell of that object in space.
    """
    ok = partner_of_2 >= 0
    own = E2[ok]
    chance = float((own**2).sum(1).mean() + (E1**2).sum(1).mean() - 2 * own.mean(0) @ E1.mean(0))
    own_chance = float(2 * ((E2 - E2.mean(0)) ** 2).sum(1).mean())
    neighbours = _gain(E2, E2[nearest_in_2], own_chance)
    return _gain(own, E1[partner_of_2[ok]], chance) / neighbours if neighbours > 0 else float("nan")


def doubt_summary(
    adata1: AnnData,
    adata2: AnnData,
    confidences: tuple[np.ndarray, np.ndarray],
    partner_of_2: np.ndarray,
    nearest_in_2: np.ndarray,
    *,
    layer: str | None,
    seed: int,
) -> dict:
    """The label-free verdict stored as ``.uns[key_added]["doubt"]`` on both objects.

    Parameters
    ----------
    adata1, adata2
        The aligned objects (their shared genes are compared).
    confidences
        The spatial confidence of every cell of both objects (NaN where none).
    partner_of_2, nearest_in_2
        See :func:`partner_similarity`.
    layer
        ``.layers`` key of the expression, as given to the alignment.
    seed
        Seed of the PCA.

    Returns
    -------
    ``partner_similarity`` (NaN without enough shared genes), ``low_confidence_share`` (over
    the matched cells of both objects), and ``verdict``: ``"doubtful"`` (a WARNING log says so),
    ``"sound"``, or ``"not judged"`` (no shared genes to judge by).
    """
    conf = np.concatenate([np.asarray(c, dtype=float) for c in confidences])
    conf = conf[np.isfinite(conf)]
    low = float((conf < LOW_CONFIDENCE).mean()) if conf.size else float("nan")
    E = joint_pcs(adata1, adata2, layer=layer, seed=seed)
    similarity = float("nan") if E is None else partner_similarity(E[0], E[1], partner_of_2, nearest_in_2)
    if not np.isfinite(similarity):
        verdict = "not judged"
    else:
        verdict = "doubtful" if similarity < DOUBTFUL_SIMILARITY else "sound"
    if verdict == "doubtful":
        logger.warning(
            "doubtful alignment: partners are alike in expression only %.2f times as much as spatial neighbours are "
            "(below %s; 0.4-0.9 on sections in one frame). Is one section turned or mirrored? Run hr.pp.register "
            "first and align on 'spatial_registered', or check the coordinates.", similarity, DOUBTFUL_SIMILARITY,
        )  # fmt: skip
    return {
        "partner_similarity": similarity,
        "threshold": DOUBTFUL_SIMILARITY,
        "low_confidence_share": low,
        "verdict": verdict,
    }
