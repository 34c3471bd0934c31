"""The expression evidence of :func:`hiref.tl.transfer_labels`, weighed by cross-validation on the source.

The spatial votes say which labels lie where a cell lands; at a border between labels they
split. A classifier of the source's labels from expression (linear discriminant analysis on
the joint expression PCs, each section's PCs centred on their own mean so that a shift of
depth or batch between the sections does not pass for a label) says which of them the cell
resembles. The two are combined as ``log(vote share + FLOOR) + weight * log p(label |
expression)``, and ``weight`` is chosen on the source alone: its cells are split into
:data:`N_FOLDS` folds, each fold's labels are predicted from the other folds' votes and
classifier, and the candidate weight with most held-out labels right wins (the smallest on a
tie). No label of the target is used.

Measured with ``benchmarks/recipe.py`` (seeds 0-2): the weight chosen is 0.05-0.2 on the nine
DLPFC cases (layers follow position; their expression differs little spot to spot) and
0.8-1.6 on MERFISH (cell classes are what expression tells), where it lifts the transfer by
0.01-0.025; see :mod:`hiref.tl._labels` for the whole table.
"""

from __future__ import annotations

import warnings

import numpy as np

#: Candidate weights of the expression evidence, tried by cross-validation on the source.
WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
#: Folds of that cross-validation.
N_FOLDS = 5
#: Added to the vote shares before their log: a label that no voter carries can still win where expression is sure.
FLOOR = 0.01
#: Log-likelihood of a label the classifier never saw (absent from its training cells).
UNSEEN = -700.0


def label_log_proba(E_fit: np.ndarray, codes: np.ndarray, E_new: np.ndarray, n_categories: int) -> np.ndarray:
    """Log posterior of every label given the expression, by linear discriminant analysis.

    Parameters
    ----------
    E_fit
        Expression of the labelled cells the classifier is fitted on, shape ``(n, d)``.
    codes
        Their labels, integers in ``[0, n_categories)``.
    E_new
        Expression of the cells to classify, shape ``(m, d)``.
    n_categories
        Number of labels.

    Returns
    -------
    Array ``(m, n_categories)``; labels absent from ``codes`` get :data:`UNSEEN`.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    out = np.full((E_new.shape[0], n_categories), UNSEEN)
    with warnings.catch_warnings():
        # PCs of few genes can be nearly collinear within a label; the posterior is still sound.
        warnings.filterwarnings("ignore", message="Variables are collinear")
        model = LinearDiscriminantAnalysis().fit(E_fit, codes)
        out[:, model.classes_] = np.maximum(model.predict_log_proba(E_new), UNSEEN)
    return out


def combined(votes: np.ndarray, log_proba: np.ndarray, weight: float) -> np.ndarray:
    """``log(vote share + FLOOR) + weight * log_proba``: the score whose largest entry is the label given."""
    share = votes / np.maximum(votes.sum(1, keepdims=True), np.finfo(float).tiny)
    return np.log(share + FLOOR) + weight * log_proba


def can_classify(codes: np.ndarray) -> bool:
    """Whether the labelled cells (``codes >= 0``) are enough to fit and cross-validate the classifier."""
    labelled = codes[codes >= 0]
    n_labels = np.unique(labelled).size
    return n_labels >= 2 and labelled.size >= N_FOLDS * (n_labels + 1)


def choose_weight(
    R_source: np.ndarray,
    E_source: np.ndarray,
    codes: np.ndarray,
    n_categories: int,
    votes_of,
    *,
    seed: int,
) -> tuple[float, list[float]]:
    """The weight of :data:`WEIGHTS` that predicts most held-out source labels (see the module docstring).

    Parameters
    ----------
    R_source
        The source cells in the representation the votes are cast in, shape ``(n, d)``.
    E_source
        Their expression PCs, shape ``(n, k)``.
    codes
        Their labels (``-1``: missing, neither fitted nor scored).
    n_categories
        Number of labels.
    votes_of
        ``votes_of(R_voters, at, voter_codes)``: the vote weights, shape ``(len(at), n_categories)``,
        of the cells ``R_voters`` (labels ``voter_codes``) at the points ``at``.
    seed
        Seed of the folds.

    Returns
    -------
    The weight chosen, and the held-out share of right labels of every candidate.
    """
    folds = np.random.default_rng(seed).integers(0, N_FOLDS, R_source.shape[0])
    right = np.zeros(len(WEIGHTS))
    for fold in range(N_FOLDS):
        held, kept = folds == fold, folds != fold
        scored = held & (codes >= 0)
        fit = kept & (codes >= 0)
        if not scored.any() or np.unique(codes[fit]).size < 2:
            continue
        votes = votes_of(R_source[kept], R_source[scored], codes[kept])
        log_proba = label_log_proba(E_source[fit], codes[fit], E_source[scored], n_categories)
        for i, weight in enumerate(WEIGHTS):
            right[i] += (combined(votes, log_proba, weight).argmax(1) == codes[scored]).sum()
    accuracy = right / max(int((codes >= 0).sum()), 1)
    return float(WEIGHTS[int(np.argmax(accuracy))]), accuracy.tolist()
