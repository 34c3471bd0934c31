"""Helpers shared by the tests (on the path through pytest's ``pythonpath`` setting)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist


def exact_matching(X: np.ndarray, Y: np.ndarray, metric: str = "sqeuclidean") -> tuple[np.ndarray, float]:
    """Optimal matching by scipy's exact solver: (perm, mean cost)."""
    C = cdist(X, Y, metric)
    rows, cols = linear_sum_assignment(C)
    perm = np.empty(len(X), dtype=np.int64)
    perm[rows] = cols
    return perm, float(C[rows, cols].mean())


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def shared_data_dir() -> Path | None:
    """``$HIREF_SHARED_DATA``, else ``../shared/data`` next to the repository, if it exists."""
    candidates = [os.environ.get("HIREF_SHARED_DATA")]
    root = Path(__file__).resolve().parents[1]
    candidates += [str(root.parent / "shared" / "data"), str(root / "shared" / "data")]
    for c in candidates:
        if c and Path(c, "merfish_hypothalamus_bregma0.26.h5ad").exists():
            return Path(c)
    return None


def assert_same_adata_content(a, b) -> None:
    """Two AnnData objects hold the same obs, obsm keys and uns keys (used after errors)."""
    assert list(a.obs.columns) == list(b.obs.columns)
    assert set(a.obsm.keys()) == set(b.obsm.keys())
    assert set(a.uns.keys()) == set(b.uns.keys())


def random_perm(n1: int, n2: int, seed: int = 0) -> np.ndarray:
    """A random one-to-one matching of ``n1`` cells onto ``n2`` (``min(n1, n2)`` pairs, ``-1``: unmatched)."""
    rng = np.random.default_rng(seed)
    perm = np.full(n1, -1, dtype=np.int64)
    k = min(n1, n2)
    perm[rng.choice(n1, k, replace=False)] = rng.choice(n2, k, replace=False)
    return perm


def store_random_matching(adata1, adata2, *, key_added: str = "hiref", seed: int = 0, **kwargs) -> None:
    """Store a random one-to-one matching as ``hr.tl.align`` stores its own: the chance level of every consumer."""
    import hiref as hr

    hr.tl.store_matching(adata1, adata2, random_perm(adata1.n_obs, adata2.n_obs, seed), key_added=key_added, **kwargs)


def store_exact_matching(adata1, adata2, *, rep: str = "spatial", key_added: str = "exact", **kwargs) -> None:
    """Store scipy's optimal matching on ``.obsm[rep]`` alone (squared Euclidean): e.g. the position-only reference."""
    import hiref as hr

    C = cdist(np.asarray(adata1.obsm[rep]), np.asarray(adata2.obsm[rep]), "sqeuclidean")
    rows, cols = linear_sum_assignment(C)
    perm = np.full(adata1.n_obs, -1, dtype=np.int64)
    perm[rows] = cols
    hr.tl.store_matching(adata1, adata2, perm, key_added=key_added, **kwargs)


def wrong_perm(perm: np.ndarray, kind: str = "random", seed: int = 0) -> np.ndarray:
    """A wrong version of the one-to-one matching ``perm`` (``-1``: unmatched), still one-to-one, same cells matched.

    ``"random"``: the partners handed out again at random; ``"half"``: only half of the matched
    cells, chosen at random, swap partners among themselves (the other half keep theirs).
    """
    if kind not in ("random", "half"):
        msg = f"unknown kind of wrong matching {kind!r}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    out = np.array(perm, dtype=np.int64)
    matched = np.flatnonzero(out >= 0)
    chosen = matched if kind == "random" else rng.choice(matched, len(matched) // 2, replace=False)
    out[chosen] = out[chosen][rng.permutation(len(chosen))]
    return out


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module (its folder on the path, for its own imports)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
