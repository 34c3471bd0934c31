"""The Python code of the docs' front page and quick start runs as written (at a smaller size).

Together with tests/test_readme.py this keeps one recipe everywhere: a page whose code drifts
from the API fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ["index.md", "quickstart.md"]
SMALLER = {"n_obs=5000": "n_obs=600", "n_obs=1000": "n_obs=300", "halfmoon_scurve(4096": "halfmoon_scurve(512"}
RECIPE = 'hr.tl.align(a, b, spatial_key="spatial_registered")'


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.DOTALL)


@pytest.mark.parametrize("page", PAGES)
def test_page_code_runs(page, monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    blocks = python_blocks(page)
    assert blocks, page
    namespace: dict = {}
    for index, code in enumerate(blocks):  # blocks build on each other, in one namespace
        for big, small in SMALLER.items():
            code = code.replace(big, small)
        exec(compile(code, f"docs/{page} block {index}", "exec"), namespace)


@pytest.mark.parametrize("page", PAGES)
def test_page_shows_the_readme_recipe(page):
    readme = (DOCS.parent / "README.md").read_text()
    assert RECIPE in readme
    code = "\n".join(python_blocks(page))
    assert "hr.pp.register(a, b)" in code
    assert RECIPE in code
    assert "use_rep={" not in code  # explicit weights are an option, described in prose, not the recipe


def test_peers_page_code_runs():
    """docs/peers.md ("Coming from moscot or PASTE"): its hiref blocks run (the PASTE block needs PASTE)."""
    import hiref as hr

    blocks = [code for code in python_blocks("peers.md") if "import paste" not in code]
    assert len(blocks) >= 2
    a, b = hr.datasets.simulate_slices(n_obs=300, seed=0)
    a.obs["layer"], b.obs["layer"] = a.obs["region"], b.obs["region"]
    namespace: dict = {"a": a, "b": b}
    for index, code in enumerate(blocks):
        exec(compile(code, f"docs/peers.md block {index}", "exec"), namespace)
    assert (b.obs["layer_from_a"] != "unmatched").all()  # b is the smaller side: every cell has a partner
    assert (b.obs["layer_from_a"].astype(str) == namespace["pred"].obs["layer"].astype(str)).mean() == 1
