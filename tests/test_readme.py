"""The README's Python examples run as written (at a smaller size)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt

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
