"""The documentation: it builds with warnings as errors and documents every public name.

The build runs once per module (``sphinx -W`` in a subprocess, into a temporary folder); the
checks on its output follow. The build's own helpers in ``docs/_ext`` are also tested directly,
on made-up inputs, without Sphinx building anything.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")
pytest.importorskip("sphinx_book_theme")
pytest.importorskip("sphinx_autodoc_typehints")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
TUTORIALS = ROOT / "tutorials"
PAGES = ["index", "installation", "quickstart", "tutorials", "api", "cli", "algorithm", "performance"]


def _ext(name: str):
    """Import one of the documentation's extensions from docs/_ext."""
    spec = importlib.util.spec_from_file_location(f"_docs_ext_{name}", DOCS / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def public_names() -> dict[str, str]:
    """Every name of every public ``__all__`` -> the page that documents it.

    Derived here independently of the docs' own extension. A subpackage's re-export of a
    top-level name (``hiref.engine.solve`` is ``hiref.solve``) is documented on the top-level page.
    """
    import hiref

    modules = [hiref] + [getattr(hiref, n) for n in hiref.__all__ if inspect.ismodule(getattr(hiref, n))]
    pages = {}
    for module in modules:
        for name in module.__all__:
            obj = getattr(module, name)
            if name.startswith("__") or inspect.ismodule(obj):
                continue
            page = f"{module.__name__}.{name}"
            if module is not hiref and name in hiref.__all__ and getattr(hiref, name) is obj:
                page = f"hiref.{name}"
            pages[f"{module.__name__}.{name}"] = page
    return pages


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    """Build the documentation once, with warnings as errors; the HTML folder."""
    out = tmp_path_factory.mktemp("docs")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    cmd += ["-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900, check=False)
    assert proc.returncode == 0, f"sphinx -W failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-12000:]}"
    return out / "html"


def test_pages_exist(html):
    for page in PAGES:
        assert (html / f"{page}.html").is_file(), page


def test_every_public_name_has_a_page(html):
    names = public_names()
    assert "hiref.solve" in names
    assert "hiref.tl.align" in names
    api = (html / "api.html").read_text(encoding="utf-8")
    missing = []
    for qualname, page in names.items():
        path = html / "generated" / f"{page}.html"
        if not path.is_file() or f'id="{page}"' not in path.read_text(encoding="utf-8"):
            missing.append(qualname)
        elif f"generated/{page}.html" not in api:
            missing.append(f"{qualname} (not linked from api.html)")
    assert not missing, f"public names without an API page: {missing}"


def test_api_pages_are_not_stale(html):
    """No page for a name that no ``__all__`` exports any more."""
    pages = set(public_names().values())
    built = {p.stem for p in (html / "generated").glob("*.html")}
    assert built == pages


def test_performance_page_has_tables(html):
    page = (html / "performance.html").read_text(encoding="utf-8")
    files = sorted(RESULTS.glob("*.json"))
    if not files:
        assert "No benchmark results yet" in page
        return
    from docutils.nodes import make_id

    assert "Machine:" in page
    n_tables = 0
    for path in files:
        assert f"benchmarks/results/{path.name}" in page
        data = json.loads(path.read_text(encoding="utf-8"))
        for key, value in data.items():
            shown = key != "machine" and not key.startswith("_")  # "_..." sections hold raw data
            if shown and isinstance(value, list) and value and isinstance(value[0], dict):
                assert f'id="{make_id(key)}' in page, f"section {key!r} of {path.name} has no table"
                n_tables += 1
    assert page.count("<table") >= n_tables >= 1
    assert 'id="runs' not in page
    for image in sorted(RESULTS.glob("*.png")):
        assert (html / "_images" / image.name).is_file(), image.name


def test_cli_page_lists_every_subcommand_and_option(html):
    from hiref.cli import _parser

    cli = _ext("hiref_cli")
    page = (html / "cli.html").read_text(encoding="utf-8")
    subs = list(cli.subcommands(_parser()))
    assert {name for name, _, _ in subs} >= {"demo"}
    for name, _, sub in subs:
        assert f"hiref {name}" in page
        for action in cli.arguments(sub):
            for option in action.option_strings:
                assert f'<span class="pre">{option}</span>' in page, f"hiref {name} {option}"


def test_tutorials_render_when_present(html):
    page = (html / "tutorials.html").read_text(encoding="utf-8")
    notebooks = sorted(TUTORIALS.glob("*.ipynb")) if TUTORIALS.is_dir() else []
    if not notebooks:
        assert "No tutorial notebooks yet" in page
    for notebook in notebooks:
        assert (html / "tutorials" / f"{notebook.stem}.html").is_file(), notebook.name
        assert f"tutorials/{notebook.stem}.html" in page


# -- the extensions' helpers, without a build ----------------------------------------------------


def test_benchmark_tables_tolerate_any_columns():
    bench = _ext("hiref_benchmarks")
    from docutils import nodes

    rows = [{"a": 1, "b": 0.123456}, {"b": float("nan"), "c": [2, 2], "d": {"x": 1.5}, "e": None}]
    table = bench.make_table(rows)
    text = table.astext()
    assert bench.columns_of(rows) == ["a", "b", "c", "d", "e"]
    assert "0.1235" in text
    assert "nan" in text
    assert "2, 2" in text
    assert "x=1.5" in text
    assert len(list(table.findall(nodes.row))) == 3  # header + 2 rows

    sections = []

    def make_section(title):
        section = nodes.section()
        section += nodes.title(text=title)
        sections.append(title)
        return section

    data = {"machine": {"cpu": 2}, "rows": rows, "single": {"n": 7, "ok": True}, "note": "text", "empty": []}
    out = bench.render_results(data, make_section=make_section)
    assert sections == ["rows", "single"]
    assert out[0].astext().startswith("Machine:")
    assert "note: text" in "".join(node.astext() for node in out)
    assert bench.format_value(1e-7) == "1.000e-07"
    assert bench.format_value(value=True) == "yes"


def test_tutorial_sync(tmp_path):
    tut = _ext("hiref_tutorials")
    source, target = tmp_path / "tutorials", tmp_path / "docs" / "tutorials"
    assert tut.sync_tutorials(source, target) == []
    assert not target.exists()

    source.mkdir()
    (source / "b.ipynb").write_text("{}")
    (source / "a.ipynb").write_text("{}")
    (source / "fig").mkdir()
    (source / "fig" / "x.png").write_bytes(b"png")
    (source / "notes.txt").write_text("not copied")
    assert sorted(tut.sync_tutorials(source, target)) == ["a", "b"]
    assert (target / "fig" / "x.png").read_bytes() == b"png"
    assert not (target / "notes.txt").exists()

    (source / "b.ipynb").unlink()
    assert tut.sync_tutorials(source, target) == ["a"]
    assert not (target / "b.ipynb").exists()
    assert tut.ordered(["x", "merfish", "a", "mosta"], ["mosta", "merfish"]) == ["mosta", "merfish", "a", "x"]


def test_api_entries_match_all():
    api = _ext("hiref_api")
    entries = api.all_entries()
    assert {f"{e.module}.{e.name}": e.page for e in entries} == public_names()
