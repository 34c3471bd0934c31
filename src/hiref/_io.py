"""Atomic file output: write to temporary files next to the destinations, then move them into place."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def temporary_name(path: Path) -> Path:
    """A fresh hidden name in ``path``'s folder, e.g. ``.result.h5ad.3f9a1c2e.tmp``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing ancestors; return those created, outermost first."""
    missing = []
    for parent in (folder, *folder.parents):
        if parent.exists():
            break
        missing.append(parent)
    folder.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def _remove_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


@contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike[str]], *, overwrite: bool = False) -> Iterator[list[Path]]:
    """Stage several output files so that they appear complete, or not at all.

    Yields one temporary path per destination, in the destination's folder (created if
    missing). When the block ends without an exception, every temporary file is moved onto its
    destination with :func:`os.replace` (atomic on one file system). On any exception,
    ``KeyboardInterrupt`` included, the temporary files and the folders created for them are
    removed and the exception propagates, so no destination is created, truncated or
    half-written.

    Parameters
    ----------
    paths
        The destination files.
    overwrite
        Replace destinations that already exist. Without it, a destination that appears while
        the block runs raises :class:`FileExistsError` before any file is moved.

    Examples
    --------
    >>> with atomic_outputs(["a.h5ad", "b.h5ad"]) as (tmp_a, tmp_b):  # doctest: +SKIP
    ...     adata_a.write_h5ad(tmp_a)
    ...     adata_b.write_h5ad(tmp_b)
    """
    targets = [Path(p) for p in paths]
    created: list[Path] = []
    temps: list[Path] = []
    try:
        for target in targets:
            created += _make_parents(target.parent)
            tmp = temporary_name(target)
            # Reserve the name (O_EXCL) with the permissions an ordinary new file gets.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            temps.append(tmp)
        yield list(temps)
        if not overwrite:
            existing = [str(t) for t in targets if t.exists()]
            if existing:
                msg = f"output file(s) appeared while writing, left in place: {', '.join(existing)}."
                raise FileExistsError(msg)
        for tmp, target in zip(temps, targets, strict=True):
            tmp.replace(target)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        _remove_empty(created)
        raise
