"""Command-line reference generated from an argparse parser.

``hiref-argparse module:function`` calls the function (it returns an
:class:`argparse.ArgumentParser`) and renders the usage, the description and the arguments of
the parser and then, in one section each, of every subcommand, recursively. Nothing is
hard-coded about the subcommands, so new ones show up by themselves.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import textwrap
from collections.abc import Iterator

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

WIDTH = 88


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(parser.prog, width=WIDTH, max_help_position=32)


def usage(parser: argparse.ArgumentParser) -> str:
    """The usage line(s), wrapped at a fixed width whatever the terminal."""
    formatter = _formatter(parser)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip()


def invocation(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """How an argument is written, e.g. ``--n N`` or ``--dataset {a,b}``."""
    try:
        return _formatter(parser)._format_action_invocation(action)
    except (AttributeError, TypeError):  # pragma: no cover - argparse internals changed
        return ", ".join(action.option_strings) or str(action.metavar or action.dest)


def help_text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The argument's help with ``%(default)s`` and friends expanded, plus its default."""
    text = action.help or ""
    with contextlib.suppress(KeyError, TypeError, ValueError):  # a help text argparse can't expand
        text = _formatter(parser)._expand_help(action) if text else ""
    default = action.default
    shows_default = "default" in text.lower()
    if (
        action.option_strings
        and not shows_default
        and default not in (None, argparse.SUPPRESS)
        and not isinstance(default, bool)
        and action.nargs != 0
    ):
        text = f"{text} (default: {default})" if text else f"default: {default}"
    return text


def arguments(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """The parser's documented arguments: not ``--help``, not subcommands, not suppressed."""
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        yield action


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, help, parser)`` of every subcommand, in the order they were added (no aliases)."""
    seen: set[int] = set()
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, sub in action.choices.items():
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            yield name, helps.get(name, ""), sub


class HirefArgparse(SphinxDirective):
    """``hiref-argparse module:function``: usage, arguments and subcommands of a parser."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        """Import the parser factory, build the parser and render it."""
        modname, _, funcname = self.arguments[0].partition(":")
        module = importlib.import_module(modname)
        if module.__file__:
            self.env.note_dependency(module.__file__)
        parser = getattr(module, funcname or "_parser")()
        return self._parser_nodes(parser, summary="")

    def _parser_nodes(self, parser: argparse.ArgumentParser, summary: str) -> list[nodes.Node]:
        out: list[nodes.Node] = []
        if parser.description:  # the longer text if there is one, else the subcommand's help
            out.extend(text_nodes(parser.description))
        elif summary:
            out.append(_paragraph(_sentence(summary)))
        out.append(nodes.literal_block(text=usage(parser), language="none"))
        for title, description, actions in argument_groups(parser):
            if not actions and not description:
                continue
            out.append(nodes.rubric(text=_sentence(title).rstrip(".")))
            if description:
                out.extend(text_nodes(description))
            if actions:
                out.append(self._arguments(parser, actions))
        if parser.epilog:
            out.extend(text_nodes(parser.epilog))
        for _name, help_, sub in subcommands(parser):
            section = nodes.section()
            section += nodes.title(text=sub.prog)
            section["names"].append(nodes.fully_normalize_name(sub.prog))
            self.state.document.note_implicit_target(section, section)
            for node in self._parser_nodes(sub, summary=help_):
                section += node
            out.append(section)
        return out

    def _arguments(self, parser: argparse.ArgumentParser, actions: list[argparse.Action]) -> nodes.Node:
        items = nodes.definition_list()
        for action in actions:
            item = nodes.definition_list_item()
            term = nodes.term()
            for i, form in enumerate(invocation(parser, action).split(", ")):  # e.g. --refine, --no-refine
                if i:
                    term += nodes.Text(", ")
                term += nodes.literal(text=form)
            item += term
            definition = nodes.definition()
            definition += _paragraph(_sentence(help_text(parser, action), capitalize=False))
            item += definition
            items += item
        return items


def text_nodes(text: str) -> list[nodes.Node]:
    """Paragraphs and literal blocks from argparse prose (description, epilog).

    Blocks are separated by blank lines. Indented lines become a literal block; an unindented
    first line before them (``example:``) stays a paragraph. Backquoted text becomes literal.
    """
    out: list[nodes.Node] = []
    for block in textwrap.dedent(text).strip("\n").split("\n\n"):
        lines = block.splitlines()
        head = []
        while lines and not lines[0].startswith((" ", "\t")):
            head.append(lines.pop(0))
        if head:
            out.append(_paragraph(" ".join(line.strip() for line in head)))
        if lines:
            out.append(nodes.literal_block(text=textwrap.dedent("\n".join(lines)), language="none"))
    return out


def _paragraph(text: str) -> nodes.paragraph:
    para = nodes.paragraph()
    if text.count("`") % 2:
        para += nodes.Text(text)
        return para
    for i, part in enumerate(text.split("`")):
        if not part:
            continue
        para += nodes.literal(text=part) if i % 2 else nodes.Text(part)
    return para


def argument_groups(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, list[argparse.Action]]]:
    """``(title, description, documented actions)`` of every argument group of the parser."""
    documented = set(map(id, arguments(parser)))
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if id(a) in documented]
        yield group.title or "", group.description or "", actions


def _sentence(text: str, *, capitalize: bool = True) -> str:
    text = text.strip()
    if not text:
        return text
    if capitalize:
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?", ":")) else f"{text}."


def setup(app: Sphinx) -> dict[str, object]:
    """Register the directive."""
    app.add_directive("hiref-argparse", HirefArgparse)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
