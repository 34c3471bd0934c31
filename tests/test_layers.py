"""The package's layers, checked on the source: who may import whom, and where keys are spelled.

Every ``import`` of every ``src/hiref/**/*.py`` counts, including those inside functions and
under ``if TYPE_CHECKING:``. The rules (also in docs/contributing.md):

- ``hiref.engine`` imports only the standard library, numpy, scipy, torch, tqdm, ortools and
  ``hiref.engine.*``: no AnnData, no plotting, nothing of the layers above it.
- ``hiref.pl`` imports nothing from ``hiref.engine`` and no private ``hiref.tl._*`` module: it
  reads what ``hr.tl`` stored through ``hiref.tl``'s public names, ``hiref.get`` and the shared
  private helpers.
- ``hiref.pp`` imports no private ``hiref.tl._*`` module (shared AnnData helpers live in
  ``hiref._*``).
- Nothing outside the engine imports its private modules (``hiref.engine._*``).
- ``hiref.get`` and ``hiref.datasets`` import nothing from ``tl``, ``pp``, ``pl``, ``cli``
  (``datasets`` not from ``get`` either).
- The shared private helpers import none of ``tl``, ``pp``, ``pl``, ``get``, ``datasets``, ``cli``.
- Names written into AnnData are spelled in ``hiref/_keys.py`` only.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "hiref"
ENGINE_THIRD_PARTY = {"numpy", "scipy", "torch", "tqdm", "ortools", "numba"}
SHARED_HELPERS = ("_anndata", "_docs", "_io", "_keys", "_logging", "_params", "_rep")
UPPER = ("tl", "pp", "pl", "get", "datasets", "cli")


def module_name(path: Path) -> str:
    """``src/hiref/tl/_align.py`` -> ``hiref.tl._align`` (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every module an import in ``path`` may load, relative imports resolved.

    ``from a.b import c`` yields ``a.b`` and ``a.b.c`` (``c`` may be a submodule).
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if node.module:
                yield node.lineno, module
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{module}.{alias.name}"


def files(*subpackages: str) -> list[Path]:
    """The ``.py`` files of ``hiref.<subpackage>`` (a folder, or a top-level module such as ``cli`` or ``_keys``)."""
    out: list[Path] = []
    for sub in subpackages:
        folder = PACKAGE / sub
        out += sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{sub}.py"]
    return out


def within(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def private_tl(module: str) -> bool:
    return within(module, "hiref.tl") and any(part.startswith("_") for part in module.split(".")[2:])


def engine_forbidden(module: str) -> bool:
    top = module.split(".")[0]
    if top == "hiref":
        return not within(module, "hiref.engine")
    return top not in ENGINE_THIRD_PARTY and top not in sys.stdlib_module_names


def offences(paths: list[Path], forbidden: Callable[[str], bool]) -> list[str]:
    """``file:line: module`` for every import in ``paths`` that ``forbidden`` refuses."""
    return [
        f"{path.relative_to(SRC.parent)}:{line}: imports {module}"
        for path in paths
        for line, module in imports(path)
        if forbidden(module)
    ]


def upper(*names: str) -> Callable[[str], bool]:
    return lambda module: within(module, *(f"hiref.{n}" for n in names))


RULES = {
    "engine imports only the standard library, numpy, scipy, torch, tqdm, ortools and hiref.engine": (
        files("engine"),
        engine_forbidden,
    ),
    "pl imports nothing from hiref.engine and no private hiref.tl._* module": (
        files("pl"),
        lambda m: within(m, "hiref.engine") or private_tl(m),
    ),
    "pp imports no private hiref.tl._* module": (files("pp"), private_tl),
    "get imports nothing from tl, pp, pl, datasets, cli": (files("get"), upper("tl", "pp", "pl", "datasets", "cli")),
    "datasets imports nothing from tl, pp, pl, get, cli": (files("datasets"), upper("tl", "pp", "pl", "get", "cli")),
    "shared helpers hiref._* import none of tl, pp, pl, get, datasets, cli": (files(*SHARED_HELPERS), upper(*UPPER)),
    "nothing outside the engine imports a private hiref.engine._* module": (
        [p for p in PACKAGE.rglob("*.py") if "engine" not in p.relative_to(PACKAGE).parts],
        lambda m: within(m, "hiref.engine") and any(part.startswith("_") for part in m.split(".")[2:]),
    ),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_layer(rule):
    paths, forbidden = RULES[rule]
    assert paths, f"no files found for {rule!r}"
    bad = offences(paths, forbidden)
    assert not bad, f"{rule}; offending imports:\n  " + "\n  ".join(bad)


def test_rules_catch_offences(tmp_path, monkeypatch):
    """The checker sees imports inside functions and under TYPE_CHECKING, relative ones included."""
    pkg = tmp_path / "hiref" / "pl"
    pkg.mkdir(parents=True)
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from hiref.engine import Matching\n"
        "def f():\n    from ..tl import _series\n    import anndata\n"
        "from hiref.tl import transfer\n"
    )
    (pkg / "_x.py").write_text(source)
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    pl_rule = next(forbidden for name, (_, forbidden) in RULES.items() if name.startswith("pl "))
    found = offences([pkg / "_x.py"], pl_rule)
    where = f"{tmp_path.name}/hiref/pl/_x.py"
    assert found == [f"{where}:3: imports hiref.engine", f"{where}:3: imports hiref.engine.Matching",
                     f"{where}:5: imports hiref.tl._series"]  # fmt: skip
    assert engine_forbidden("anndata")
    assert engine_forbidden("hiref._keys")
    assert not engine_forbidden("torch.nn")


# Names hiref writes into AnnData, as they would be spelled by hand outside hiref/_keys.py.
KEY_SUFFIXES = ("match", "matched", "labels", "partner_spatial", "confidence", "cost", "source", "next", "prev", "pca")
KEY_LITERALS = {"spatial_registered", "hiref_transfer", "bin_x", "bin_y"}
KEY_NAMES = {"key", "key_added"}


def _docstrings(tree: ast.AST) -> set[int]:
    """``id`` of every docstring node of ``tree``."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _spelled_key(node: ast.AST) -> bool:
    """An f-string ``f"{key}_suffix"``, or a string constant that is a key of hiref's."""
    if isinstance(node, ast.JoinedStr):
        for value, following in zip(node.values, node.values[1:], strict=False):
            target = value.value if isinstance(value, ast.FormattedValue) else None
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
            if name in KEY_NAMES and isinstance(following, ast.Constant) and str(following.value).startswith("_"):
                return True
        return False
    return isinstance(node, ast.Constant) and node.value in KEY_LITERALS


def test_keys_are_spelled_in_keys_module():
    paths = [p for p in files(*UPPER, *SHARED_HELPERS) if p.name != "_keys.py"]
    pattern = re.compile(rf"^hiref_({'|'.join(KEY_SUFFIXES)})$")
    bad = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            literal = isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.match(node.value)
            if _spelled_key(node) or literal:
                bad.append(f"{path.relative_to(SRC.parent)}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, "spell these names in hiref/_keys.py and use them from there:\n  " + "\n  ".join(bad)
