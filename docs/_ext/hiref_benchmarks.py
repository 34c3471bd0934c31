"""Benchmark tables rendered at build time from the JSON files the benchmark scripts write.

The directive ``hiref-benchmarks`` reads every ``*.json`` of the folder ``hiref_benchmarks_dir``
(relative to the documentation's source folder) and renders one section per file: the machine it
ran on, then one table per result section. A file is ``{"machine": {...}, "<section>": value}``
where a value is a list of row dicts (a table, columns in order of first appearance), a dict (a
one-row table) or a scalar (a line of text); unknown columns and sections are shown as they
come; keys starting with ``_`` (raw data kept for scripts) are not shown. PNG files of the
same folder are shown under the file whose name they start with, the
others at the end. The page is read again on every build, so files that appear later show up.
The directive ``hiref-benchmark-table FILE`` (option ``:section:``) renders one table of one
file, with its machine line, for the top of a page.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

ENV_KEY = "hiref_benchmark_docs"


def format_value(value: object) -> str:
    """A short text for one table cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def columns_of(rows: Iterable[Mapping[str, object]]) -> list[str]:
    """Union of the rows' keys, in order of first appearance."""
    columns: dict[str, None] = {}
    for row in rows:
        for key in row:
            columns.setdefault(str(key), None)
    return list(columns)


def _numeric(values: list[object]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)


def make_table(rows: list[Mapping[str, object]]) -> nodes.table:
    """A docutils table of ``rows`` (dicts), one column per key any row has."""
    rows = [row if isinstance(row, Mapping) else {"value": row} for row in rows]
    columns = columns_of(rows)
    numeric = {c: _numeric([row.get(c) for row in rows]) for c in columns}
    table = nodes.table(classes=["hiref-benchmark"])
    group = nodes.tgroup(cols=len(columns))
    table += group
    for _ in columns:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    group += head
    head += _row([nodes.literal(text=c) for c in columns])
    body = nodes.tbody()
    group += body
    for row in rows:
        cells = [nodes.Text(format_value(row.get(c))) for c in columns]
        body += _row(cells, right=[numeric[c] for c in columns])
    return table


def _row(contents: list[nodes.Node], right: list[bool] | None = None) -> nodes.row:
    row = nodes.row()
    for i, content in enumerate(contents):
        entry = nodes.entry()
        if right is not None and right[i]:
            entry["classes"].append("text-right")
        para = nodes.paragraph()
        para += content
        entry += para
        row += entry
    return row


def machine_line(machine: object) -> nodes.paragraph:
    """``Machine: key value, ...`` as one paragraph."""
    para = nodes.paragraph()
    para += nodes.strong(text="Machine: ")
    if isinstance(machine, Mapping):
        para += nodes.Text("; ".join(f"{k} {format_value(v)}" for k, v in machine.items()))
    else:
        para += nodes.Text(format_value(machine))
    return para


def render_results(data: Mapping[str, object], *, make_section) -> list[nodes.Node]:
    """Nodes for one results file: the machine line, then a part per other key."""
    out: list[nodes.Node] = []
    if not isinstance(data, Mapping):
        return [make_table(data if isinstance(data, list) else [{"value": data}])]
    if "machine" in data:
        out.append(machine_line(data["machine"]))
    for key, value in data.items():
        if key == "machine" or str(key).startswith("_"):  # "_..." keys hold raw data for scripts
            continue
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            section = make_section(str(key))
            section += make_table(value)
            out.append(section)
        elif isinstance(value, Mapping) and value:
            section = make_section(str(key))
            section += make_table([value])
            out.append(section)
        else:
            para = nodes.paragraph()
            para += nodes.strong(text=f"{key}: ")
            para += nodes.Text(format_value(value) if value not in ([], {}) else "(empty)")
            out.append(para)
    return out


class HirefBenchmarks(SphinxDirective):
    """``hiref-benchmarks``: sections and tables for every JSON file of the results folder."""

    has_content = False
    option_spec = {"path": str}  # noqa: RUF012

    def run(self) -> list[nodes.Node]:
        """Render every results file; say so if there is none."""
        docs = getattr(self.env, ENV_KEY, set())
        docs.add(self.env.docname)
        setattr(self.env, ENV_KEY, docs)

        folder = Path(self.env.srcdir, self.options.get("path", self.config.hiref_benchmarks_dir)).resolve()
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        images = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if folder.is_dir():
            self.env.note_dependency(str(folder))
        if not files and not images:
            para = nodes.paragraph()
            para += nodes.emphasis(text=f"No benchmark results yet (no JSON files in {folder.name}/).")
            return [para]

        out: list[nodes.Node] = []
        used: set[Path] = set()
        for path in files:
            self.env.note_dependency(str(path))
            section = self._section(path.stem)
            source = nodes.paragraph()
            source += nodes.Text("From ")
            source += nodes.literal(text=Path(os.path.relpath(path, Path(self.env.srcdir).parent)).as_posix())
            source += nodes.Text(".")
            section += source
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                logger.warning("hiref-benchmarks: cannot read %s: %s", path, err, location=self.get_location())
                continue
            for node in render_results(data, make_section=self._section):
                section += node
            for image in images:
                if image.stem.startswith(path.stem) and image not in used:
                    used.add(image)
                    section += self._figure(image)
            out.append(section)
        rest = [image for image in images if image not in used]
        if rest:
            section = self._section("plots")
            for image in rest:
                section += self._figure(image)
            out.append(section)
        return out

    def _section(self, title: str) -> nodes.section:
        section = nodes.section()
        section += nodes.title(text=title)
        name = nodes.fully_normalize_name(title)
        section["names"].append(name)
        self.state.document.note_implicit_target(section, section)
        return section

    def _figure(self, image: Path) -> nodes.Node:
        self.env.note_dependency(str(image))
        rel = Path(os.path.relpath(image, Path(self.env.doc2path(self.env.docname)).parent))
        figure = nodes.figure()
        figure += nodes.image(uri=rel.as_posix(), alt=image.stem)
        figure += nodes.caption(text=image.name)
        return figure


class HirefBenchmarkTable(SphinxDirective):
    """``hiref-benchmark-table FILE``: one section of one results file as a table, with its machine line.

    ``FILE`` is a JSON file of the results folder; ``:section:`` the key of the table (a list of
    row dicts). Used at the top of a page, where a reader needs one table and not the whole file.
    """

    required_arguments = 1
    has_content = False
    option_spec = {"section": str, "path": str}  # noqa: RUF012

    def run(self) -> list[nodes.Node]:
        """The machine line and the table; a warning when the file or section is missing."""
        folder = Path(self.env.srcdir, self.options.get("path", self.config.hiref_benchmarks_dir)).resolve()
        path = folder / self.arguments[0]
        key = self.options.get("section", "summary")
        docs = getattr(self.env, ENV_KEY, set())
        docs.add(self.env.docname)
        setattr(self.env, ENV_KEY, docs)
        if not path.is_file():
            para = nodes.paragraph()
            para += nodes.emphasis(text=f"No results yet ({path.name} is missing).")
            return [para]
        self.env.note_dependency(str(path))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            logger.warning("hiref-benchmark-table: cannot read %s: %s", path, err, location=self.get_location())
            return []
        rows = data.get(key) if isinstance(data, Mapping) else None
        if not isinstance(rows, list) or not rows:
            logger.warning("hiref-benchmark-table: %s has no table %r", path.name, key, location=self.get_location())
            return []
        out: list[nodes.Node] = [make_table(rows)]
        if "machine" in data:
            out.append(machine_line(data["machine"]))
        return out


def always_outdated(
    app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """Pages with benchmark tables are re-read on every build (result files may have appeared)."""
    docs = getattr(env, ENV_KEY, set())
    return [doc for doc in docs if doc in env.found_docs and doc not in removed]


def purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    """Forget a page that is about to be read again."""
    getattr(env, ENV_KEY, set()).discard(docname)


def merge(app: Sphinx, env: BuildEnvironment, docnames: set[str], other: BuildEnvironment) -> None:
    """Merge what parallel readers found."""
    docs = getattr(env, ENV_KEY, set())
    docs |= getattr(other, ENV_KEY, set())
    setattr(env, ENV_KEY, docs)


def setup(app: Sphinx) -> dict[str, object]:
    """Register the directive, its configuration value and the re-read hook."""
    app.add_config_value("hiref_benchmarks_dir", "../benchmarks/results", "env", types=frozenset({str}))
    app.add_directive("hiref-benchmarks", HirefBenchmarks)
    app.add_directive("hiref-benchmark-table", HirefBenchmarkTable)
    app.connect("env-get-outdated", always_outdated)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
