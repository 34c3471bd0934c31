"""Tutorial notebooks from the repository's top-level ``tutorials/`` folder.

The notebooks live outside the documentation's source folder and are committed once, there.
At ``builder-inited`` this extension copies every ``*.ipynb`` of ``hiref_tutorials_source``
(and the images next to them) into ``hiref_tutorials_target`` inside the source folder (a
build-time folder, ignored by git), skipping files whose bytes did not change and removing
notebooks that disappeared. A notebook saved without ``language_info`` metadata gets Python's
in the copy, so that myst-nb can highlight its code. The directive ``hiref-tutorials`` is a toctree of the notebooks
present, in ``hiref_tutorials_order`` first and then by name, or a note when there is none yet.
"""

from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.directives.other import TocTree
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

ENV_KEY = "hiref_tutorial_docs"
ASSETS = {".png", ".jpg", ".jpeg", ".gif", ".svg"}
SKIP_DIRS = {".ipynb_checkpoints", "__pycache__", "data", "_build"}


def _source_files(source: Path) -> list[Path]:
    """Notebooks at the top of ``source`` and images anywhere below it (relative paths)."""
    if not source.is_dir():
        return []
    files = [p.relative_to(source) for p in sorted(source.glob("*.ipynb"))]
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_file() and path.suffix.lower() in ASSETS and not SKIP_DIRS.intersection(rel.parts[:-1]):
            files.append(rel)
    return files


def sync_tutorials(source: Path, target: Path) -> list[str]:
    """Mirror the notebooks and images of ``source`` into ``target``; return the notebook stems."""
    wanted = _source_files(source)
    for rel in wanted:
        src, dst = source / rel, target / rel
        data = _prepared(src)
        if dst.is_file() and dst.read_bytes() == data:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
    if target.is_dir():
        keep = {target / rel for rel in wanted}
        for path in sorted(target.rglob("*"), reverse=True):
            if path.is_file() and (path.suffix == ".ipynb" or path.suffix.lower() in ASSETS) and path not in keep:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        if not any(target.iterdir()):
            target.rmdir()
    return [rel.stem for rel in wanted if rel.suffix == ".ipynb"]


def _prepared(path: Path) -> bytes:
    """The bytes to copy: a notebook without ``language_info`` gets Python's (for highlighting)."""
    data = path.read_bytes()
    if path.suffix != ".ipynb":
        return data
    try:
        notebook = json.loads(data)
    except ValueError:
        return data  # let myst-nb report it
    metadata = notebook.get("metadata") if isinstance(notebook, dict) else None
    if not isinstance(metadata, dict) or metadata.get("language_info"):
        return data
    metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    return json.dumps(notebook, indent=1, ensure_ascii=False).encode("utf-8") + b"\n"


def ordered(stems: list[str], order: list[str]) -> list[str]:
    """``stems`` with the names of ``order`` first, in that order, then the rest by name."""
    first = [s for s in order if s in stems]
    return first + sorted(s for s in stems if s not in first)


def on_builder_inited(app: Sphinx) -> None:
    """Copy the notebooks in before Sphinx looks for source files."""
    source = (Path(app.srcdir) / app.config.hiref_tutorials_source).resolve()
    target = Path(app.srcdir) / app.config.hiref_tutorials_target
    stems = sync_tutorials(source, target)
    logger.info("[hiref_tutorials] %d notebook(s) from %s", len(stems), source)


class HirefTutorials(SphinxDirective):
    """``hiref-tutorials``: a toctree of the notebooks copied in, or a note if there are none."""

    has_content = False
    option_spec = {"maxdepth": int}  # noqa: RUF012

    def run(self) -> list[nodes.Node]:
        """Build the toctree from the notebooks that are there now."""
        docs = getattr(self.env, ENV_KEY, set())
        docs.add(self.env.docname)
        setattr(self.env, ENV_KEY, docs)

        target = Path(self.env.srcdir) / self.config.hiref_tutorials_target
        stems = [p.stem for p in target.glob("*.ipynb")] if target.is_dir() else []
        if not stems:
            para = nodes.paragraph()
            para += nodes.emphasis(text="No tutorial notebooks yet: they appear here once tutorials/ holds them.")
            return [para]
        here = Path(self.env.doc2path(self.env.docname)).parent
        prefix = Path(target).relative_to(here).as_posix() if target.is_relative_to(here) else target.as_posix()
        entries = [f"{prefix}/{stem}" for stem in ordered(stems, list(self.config.hiref_tutorials_order))]
        toctree = TocTree(
            "toctree",
            [],
            {"maxdepth": self.options.get("maxdepth", 1)},
            StringList(entries, source=self.get_source_info()[0]),
            self.lineno,
            self.content_offset,
            self.block_text,
            self.state,
            self.state_machine,
        )
        return toctree.run()


def always_outdated(
    app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """The page listing the tutorials is re-read on every build (notebooks may have appeared)."""
    return [doc for doc in getattr(env, ENV_KEY, set()) if doc in env.found_docs and doc not in removed]


def purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    """Forget a page that is about to be read again."""
    getattr(env, ENV_KEY, set()).discard(docname)


def merge(app: Sphinx, env: BuildEnvironment, docnames: set[str], other: BuildEnvironment) -> None:
    """Merge what parallel readers found."""
    setattr(env, ENV_KEY, getattr(env, ENV_KEY, set()) | getattr(other, ENV_KEY, set()))


def setup(app: Sphinx) -> dict[str, object]:
    """Register the configuration values, the copy step and the directive."""
    app.add_config_value("hiref_tutorials_source", "../tutorials", "env", types=frozenset({str}))
    app.add_config_value("hiref_tutorials_target", "tutorials", "env", types=frozenset({str}))
    app.add_config_value("hiref_tutorials_order", [], "env", types=frozenset({list, tuple}))
    app.add_directive("hiref-tutorials", HirefTutorials)
    app.connect("builder-inited", on_builder_inited, priority=300)
    app.connect("env-get-outdated", always_outdated)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
