"""The README's Python examples run as written (at a smaller size) and give the right answers."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy.spatial import cKDTree

import hiref as hr

from helpers import exact_matching, store_random_matching

README = Path(__file__).resolve().parents[1] / "README.md"
SMALLER = {"n_obs=5000": "n_obs=600", "halfmoon_scurve(4096": "halfmoon_scurve(512"}


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


def test_readme_has_examples():
    assert len(_python_blocks()) >= 2


def test_readme_examples_run(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    namespace: dict = {}
    # Blocks build on each other (the first imports hiref), so they run in order, in one namespace.
    for index, code in enumerate(_python_blocks()):
        for big, small in SMALLER.items():
            code = code.replace(big, small)
        exec(compile(code, f"README.md block {index}", "exec"), namespace)

    # The first block's alignment finds the simulated partners: most cells get their true partner, the
    # median one lies within one cell spacing of it, and labels agree far better than by chance.
    a, b = namespace["a"], namespace["b"]
    partner = b.uns["hiref"]["partner"]
    truth = a.obs_names.get_indexer(b.obs["true_match"])
    spatial = a.obsm["spatial"]
    spacing = np.median(cKDTree(spatial).query(spatial, k=2)[0][:, 1])
    assert np.median(np.linalg.norm(spatial[partner] - spatial[truth], axis=1)) <= spacing
    agreement = hr.tl.label_agreement(a, b, obs="region").loc["overall", "agreement"]
    store_random_matching(a, b, key_added="random")
    chance = hr.tl.label_agreement(a, b, obs="region", key="random").loc["overall", "agreement"]
    assert agreement - chance > 0.9 * (1 - chance)
    carried = (b.obs["hiref_region"] == b.obs["region"]).mean()
    assert carried - chance > 0.9 * (1 - chance)
    pred = namespace["pred"]
    np.testing.assert_array_equal(pred.obs["region"].astype(str), a.obs["region"].astype(str).to_numpy()[partner])

    # The second block's matching is optimal (scipy's exact solver).
    X, Y, m = namespace["X"], namespace["Y"], namespace["m"]
    _, best = exact_matching(X, Y)
    assert best <= m.cost <= best * 1.01
