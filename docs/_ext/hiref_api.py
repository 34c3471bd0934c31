"""API listings generated from ``__all__``, so that a new public name is documented by itself.

The directive ``hiref-autosummary`` takes a module (``hiref``, ``hiref.tl``, ...) and expands to
an ``autosummary`` table of every public name of its ``__all__``. Autosummary's own stub
generator only finds names written out literally in the source files, so at ``builder-inited``
this extension writes the stub pages itself (into ``generated/``) and removes stale ones.

Names that a subpackage re-exports from the top level (``hiref.engine.solve`` is
``hiref.solve``) get one page, under the shorter top-level name; the subpackage's listing says
so in a line below its table.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.ext.autosummary import Autosummary
from sphinx.ext.autosummary.generate import generate_autosummary_docs
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

PACKAGE = "hiref"
STUB_DIR = "generated"


@dataclass(frozen=True)
class Entry:
    """One public name of one module's ``__all__``."""

    module: str  # the module whose __all__ lists it, e.g. "hiref.engine"
    name: str  # the name in that __all__, e.g. "solve"
    page: str  # the fully qualified name its page is generated under, e.g. "hiref.solve"

    @property
    def alias(self) -> bool:
        """True if the page lives under another module (a re-export of a top-level name)."""
        return self.page != f"{self.module}.{self.name}"


def public_modules(package: str = PACKAGE) -> list[ModuleType]:
    """The package and every subpackage its ``__all__`` exports, in that order."""
    top = importlib.import_module(package)
    mods = [top]
    for name in getattr(top, "__all__", []):
        obj = getattr(top, name, None)
        if inspect.ismodule(obj):
            mods.append(obj)
    return mods


def public_entries(module: ModuleType, package: str = PACKAGE) -> list[Entry]:
    """The documented names of ``module.__all__``: no submodules, no dunders (``__version__``)."""
    top = importlib.import_module(package)
    entries = []
    for name in getattr(module, "__all__", []):
        if name.startswith("__"):
            continue
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            continue
        page = f"{module.__name__}.{name}"
        if module is not top and name in getattr(top, "__all__", []) and getattr(top, name, None) is obj:
            page = f"{package}.{name}"
        entries.append(Entry(module.__name__, name, page))
    return entries


def all_entries(package: str = PACKAGE) -> list[Entry]:
    """Every public name of the package and its public subpackages."""
    return [entry for module in public_modules(package) for entry in public_entries(module, package)]


def _autosummary_lines(entries: list[Entry], toctree: str) -> list[str]:
    return [
        f".. currentmodule:: {PACKAGE}",
        "",
        ".. autosummary::",
        f"   :toctree: {toctree}",
        "",
        *(f"   {entry.page.removeprefix(PACKAGE + '.')}" for entry in entries),
        "",
    ]


class HirefAutosummary(SphinxDirective):
    """``hiref-autosummary <module>``: an autosummary table of the module's ``__all__``."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        """Expand into autosummary (own names) plus a line for re-exported top-level names."""
        modname = self.arguments[0]
        module = importlib.import_module(modname)
        if module.__file__:
            self.env.note_dependency(module.__file__)
        entries = public_entries(module)
        own = [e for e in entries if not e.alias]
        aliases = [e for e in entries if e.alias]
        result: list[nodes.Node] = []
        if own:
            content = StringList([e.page.removeprefix(PACKAGE + ".") for e in own], source=self.get_source_info()[0])
            directive = Autosummary(
                "autosummary",
                [],
                {"toctree": STUB_DIR, "nosignatures": True},
                content,
                self.lineno,
                self.content_offset,
                self.block_text,
                self.state,
                self.state_machine,
            )
            # Autosummary resolves names against the current module, which this document may
            # not have set: name everything relative to the package.
            previous = self.env.ref_context.get("py:module")
            self.env.ref_context["py:module"] = PACKAGE
            try:
                result.extend(directive.run())
            finally:
                if previous is None:
                    self.env.ref_context.pop("py:module", None)
                else:
                    self.env.ref_context["py:module"] = previous
        if aliases:
            para = nodes.paragraph()
            para += nodes.Text("Also exported here, documented under the top-level name: ")
            for i, entry in enumerate(aliases):
                if i:
                    para += nodes.Text(", ")
                ref_text = f"{modname}.{entry.name}"
                xref = self._xref(entry.page, ref_text)
                para += xref
                para += nodes.Text(" (")
                para += nodes.literal(text=entry.page)
                para += nodes.Text(")")
            para += nodes.Text(".")
            result.append(para)
        return result

    def _xref(self, target: str, text: str) -> nodes.Node:
        from sphinx.addnodes import pending_xref

        ref = pending_xref(
            "",
            refdomain="py",
            reftype="obj",
            reftarget=target,
            refexplicit=True,
            refwarn=True,
            refdoc=self.env.docname,
        )
        ref += nodes.literal(text=text, classes=["xref", "py", "py-obj"])
        return ref


def generate_stubs(app: Sphinx) -> None:
    """Write a stub page for every public name into ``generated/`` and drop stale stubs."""
    out = Path(app.srcdir) / STUB_DIR
    entries = [e for e in all_entries() if not e.alias]
    lines = _autosummary_lines(entries, str(out))
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "hiref_api_listing.rst"
        listing.write_text("\n".join(lines), encoding="utf-8")
        written = generate_autosummary_docs(
            [str(listing)],
            suffix=".rst",
            app=app,
            imported_members=app.config.autosummary_imported_members,
            overwrite=True,
        )
    keep = {Path(p).resolve() for p in written}
    for stale in out.glob("*.rst"):
        if stale.resolve() not in keep:
            logger.info("[hiref_api] removing stale stub %s", stale.name)
            stale.unlink()


def hide_dataclass_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    """No constructor signature for dataclasses: they are results (``Matching``), not inputs.

    Their generated ``__init__`` lists every field with ``<factory>`` defaults; the fields are
    documented in the class's Attributes section instead.
    """
    if what == "class" and dataclasses.is_dataclass(obj):
        return "", None
    return None


def drop_returns_colon(app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    """Undo sphinx-autodoc-typehints' ``:`` line under a numpy ``Returns`` header.

    sphinx-autodoc-typehints inserts it (at priority 499) so that napoleon reads no type from the
    section. ``conf.py`` has napoleon render Returns sections as written, where the ``:`` would
    show as text. This runs after that insertion and before napoleon (priority 500).
    """
    for i in range(len(lines) - 2):
        rule = lines[i + 1].strip()
        if lines[i].strip() == "Returns" and len(rule) >= 3 and set(rule) == {"-"} and lines[i + 2] == ":":
            del lines[i + 2]
            return


def setup(app: Sphinx) -> dict[str, object]:
    """Register the directive, the stub generator and the autodoc hooks."""
    app.setup_extension("sphinx.ext.autosummary")
    app.add_directive("hiref-autosummary", HirefAutosummary)
    app.connect("builder-inited", generate_stubs, priority=400)
    app.connect("autodoc-process-signature", hide_dataclass_signature, priority=400)
    app.connect("autodoc-process-docstring", drop_returns_colon, priority=499)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
