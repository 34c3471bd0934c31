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

And the package's shape (issue 28): no import circles (lazy imports count), no import of the
package root ``hiref`` below it (the version is in ``hiref/_version.py``), no function over 80
lines (docstring aside) in the glue layers, no default key spelled as a literal, and no write
into ``.uns``/``.obs``/``.obsm``/``.obsp`` outside ``hiref/_contract.py``.
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
SHARED_HELPERS = ("_anndata", "_contract", "_docs", "_io", "_keys", "_logging", "_params", "_rep", "_version")
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


# ------------------------------------------------------------------ the package's shape (issue 28)

GLUE = ("tl", "pp", "pl", "get", "cli", "_contract", "_keys", "_params", "_anndata", "_rep")
MAX_LINES = 80
#: Default keys of the tools: spelled in hiref/_keys.py only (ALIGN_KEY, ...), never as a literal default.
DEFAULT_KEYS = {"hiref", "spatial_registered", "hiref_trace", "spatial_3d"}
WRITING_TOOLS = {
    "hiref.tl._align": "align",
    "hiref.tl._series": "align_series",
    "hiref.tl._trace": "trace",
    "hiref.tl._stack": "stack",
    "hiref.tl._store": "store_matching",
    "hiref.tl._transfer": "transfer",
    "hiref.tl._bin": "bin_spatial",
    "hiref.pp._register": "register",
}
WRITTEN_SLOTS = {"uns", "obs", "obsm", "obsp"}


def all_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_of(name: str, modules: set[str]) -> str | None:
    """The module of the package that an imported name loads (its longest prefix that is a module)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(paths: list[Path]) -> dict[str, set[str]]:
    """Module -> the package's modules its imports load (explicitly: not the parents a submodule import loads)."""
    modules = {module_name(p) for p in paths}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path in paths:
        name = module_name(path)
        for _, imported in imports(path):
            target = module_of(imported, modules)
            if target is not None and target != name and (imported == target or imported.startswith(target + ".")):
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_no_import_circles():
    found = cycles(import_graph(all_files()))
    assert not found, "import circles (lazy imports count):\n  " + "\n  ".join(" <-> ".join(c) for c in found)


def root_imports(path: Path) -> list[str]:
    """``file:line`` of every import of the package root ``hiref`` itself in ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            hit = any(alias.name == "hiref" for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            module = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
            hit = module == "hiref"
        else:
            continue
        if hit:
            out.append(f"{path.relative_to(SRC.parent)}:{node.lineno}")
    return out


def test_no_import_of_the_package_root_below_it():
    bad = [hit for p in all_files() if p != PACKAGE / "__init__.py" for hit in root_imports(p)]
    assert not bad, "import from hiref/_version.py (or the module itself), not the package root:\n  " + "\n  ".join(bad)


def code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function, its docstring left out."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def long_functions(paths: list[Path], limit: int = MAX_LINES) -> list[str]:
    return [
        f"{path.relative_to(SRC.parent)}:{node.lineno}: {node.name} ({code_lines(node)} lines)"
        for path in paths
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and code_lines(node) > limit
    ]


def test_no_long_functions_in_the_glue():
    bad = long_functions(files(*GLUE))
    assert not bad, f"split into named steps (at most {MAX_LINES} lines, docstring aside):\n  " + "\n  ".join(bad)


def literal_default_keys(path: Path) -> list[str]:
    """``file:line`` of every default key spelled as a literal: a parameter's default or a ``default=`` keyword."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        defaults: list[ast.AST] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            defaults = [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
        elif isinstance(node, ast.Call):
            defaults = [k.value for k in node.keywords if k.arg == "default"]
        out += [
            f"{path.relative_to(SRC.parent)}:{d.lineno}: {d.value!r}"
            for d in defaults
            if isinstance(d, ast.Constant) and d.value in DEFAULT_KEYS
        ]
    return out


def test_default_keys_are_the_constants():
    bad = [hit for p in all_files() if p.name != "_keys.py" for hit in literal_default_keys(p)]
    assert not bad, "use ALIGN_KEY, REGISTER_KEY, TRACE_KEY or STACK_KEY from hiref/_keys.py:\n  " + "\n  ".join(bad)


def direct_writes(path: Path) -> list[str]:
    """``file:line`` of every assignment into (or deletion from) ``x.uns[...]``, ``x.obs[...]`` and so on."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.value, ast.Attribute)
                    and target.value.attr in WRITTEN_SLOTS
                ):
                    out.append(f"{path.relative_to(SRC.parent)}:{node.lineno}: {ast.unparse(target)}")
    return out


def test_writing_tools_write_through_the_contract():
    bad = [hit for p in files("tl", "pp", "pl", "get", "cli") for hit in direct_writes(p)]
    assert not bad, "write into AnnData through hiref._contract.write:\n  " + "\n  ".join(bad)
    paths = {module_name(p): p for p in files("tl", "pp")}
    missing = [m for m in WRITING_TOOLS if "hiref._contract" not in {name for _, name in imports(paths[m])}]
    assert not missing, f"writing tools that do not use hiref._contract: {missing}"


def test_shape_checks_catch_offences(tmp_path, monkeypatch):
    """Each check of this section fails on a made-up module that breaks it."""
    pkg = tmp_path / "hiref" / "tl"
    pkg.mkdir(parents=True)
    (tmp_path / "hiref" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "_a.py").write_text("def f():\n    from ._b import g\n")
    (pkg / "_b.py").write_text(
        "from hiref import __version__\n"
        "from . import _a\n"
        "def tool(adata, *, key_added='hiref'):\n    adata.obs['x'] = 1\n    del adata.uns['y']\n"
        "def long():\n" + "    x = 1\n" * (MAX_LINES + 1)
    )
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path / "hiref")
    assert cycles(import_graph(sorted((tmp_path / "hiref").rglob("*.py")))) == [["hiref.tl._a", "hiref.tl._b"]]
    b = pkg / "_b.py"
    assert root_imports(b) == [f"{tmp_path.name}/hiref/tl/_b.py:1"]
    assert [h.split(": ")[1] for h in long_functions([b])] == [f"long ({MAX_LINES + 2} lines)"]
    assert literal_default_keys(b) == [f"{tmp_path.name}/hiref/tl/_b.py:3: 'hiref'"]
    assert [h.rsplit(": ", 1)[1] for h in direct_writes(b)] == ["adata.obs['x']", "adata.uns['y']"]
