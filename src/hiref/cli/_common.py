"""What every subcommand of the ``hiref`` command shares: errors, argument types, checked inputs and outputs."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from anndata import AnnData

#: Exit status of a failed command (the status argparse uses for usage errors).
EXIT_ERROR = 2
#: Exit status after Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130
#: Exit status after SIGTERM (128 + SIGTERM), what schedulers and ``timeout`` send.
EXIT_TERMINATED = 143


class CliError(Exception):
    """A problem to report as one line, without a traceback."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seed(text: str) -> int:
    """Parse ``--seed``: an int in ``[0, 2**32)``, the rule of every hiref seed."""
    from hiref.engine.checks import SEED_LIMIT

    try:
        value = int(text)
    except ValueError:
        msg = f"invalid int value: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0 <= value < SEED_LIMIT:
        msg = f"must be an int from 0 to {SEED_LIMIT - 1}, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _check_inputs(paths: Sequence[str]) -> list[Path]:
    """Every input must be an existing file."""
    checked = []
    for text in paths:
        path = Path(text)
        if not path.exists():
            msg = f"input file not found: {text}"
            raise CliError(msg)
        if not path.is_file():
            msg = f"input is not a file: {text}"
            raise CliError(msg)
        checked.append(path)
    return checked


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return a.samefile(b)
    return a.resolve() == b.resolve()


def _check_outputs(paths: Sequence[str], inputs: Sequence[Path], *, overwrite: bool) -> list[Path]:
    """Outputs must differ from the inputs and from each other, and be writable."""
    checked: list[Path] = []
    for text in paths:
        path = Path(text)
        if text.endswith(("/", os.sep)) or (os.altsep and text.endswith(os.altsep)):
            msg = f"output {text} ends with a path separator (a folder); give a file path"
            raise CliError(msg)
        if any(_same_file(path, p) for p in inputs):
            msg = f"output {text} is an input file; write to another path (inputs are never overwritten)"
            raise CliError(msg)
        if any(_same_file(path, p) for p in checked):
            msg = f"two outputs go to the same file: {text}"
            raise CliError(msg)
        if path.is_dir():
            msg = f"output {text} is a folder; give a file path"
            raise CliError(msg)
        if path.exists() and not overwrite:
            msg = f"output file exists: {text} (pass --overwrite to replace it)"
            raise CliError(msg)
        folder = next(p for p in (path.parent, *path.parent.parents) if p.exists() or p == p.parent)
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            msg = f"cannot create {text}: {folder} is not a writable folder"
            raise CliError(msg)
        checked.append(path)
    return checked


def _check_device(device: str | None) -> None:
    from hiref.engine.checks import resolve_device

    try:
        resolve_device(device)
    except ValueError as err:
        msg = f"argument --device: {err}"
        raise CliError(msg) from err


def _read(path: Path) -> AnnData:
    """Read one ``.h5ad`` file; any failure becomes a one-line error naming the file."""
    import anndata as ad

    try:
        return ad.read_h5ad(path)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        msg = f"cannot read {path} as .h5ad: {reason}"
        raise CliError(msg) from err


def _write(pairs: Sequence[tuple[AnnData, Path]], *, overwrite: bool) -> None:
    """Write AnnData objects atomically: all complete, or none touched."""
    from hiref._io import atomic_outputs

    try:
        with atomic_outputs([path for _, path in pairs], overwrite=overwrite) as temps:
            for (adata, _), tmp in zip(pairs, temps, strict=True):
                adata.write_h5ad(tmp)
    except OSError as err:
        msg = f"cannot write {', '.join(str(p) for _, p in pairs)}: {err}"
        raise CliError(msg) from err


def _api_error(err: Exception, names: dict[str, Path]) -> CliError:
    """The message of an error raised by ``hr.tl`` (a KeyError's without its quotes).

    ``names`` maps the API's argument names (``adata1``, ...) to the files they were read from;
    those the message mentions are spelled out at its end.
    """
    text = str(err.args[0] if isinstance(err, KeyError) and err.args else err).rstrip()
    mentioned = [f"{name} = {path}" for name, path in names.items() if re.search(rf"\b{name}\b", text)]
    return CliError(f"{text} ({', '.join(mentioned)})" if mentioned else text)
