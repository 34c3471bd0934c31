"""The ``hiref`` command: ``hiref demo``, ``hiref align`` and ``hiref transfer``.

Every command validates its arguments and inputs before any expensive work, writes its outputs
atomically (see :func:`hiref._io.atomic_outputs`) and reports an error as one line
``hiref <command>: error: ...`` on stderr with exit status 2 (130 when interrupted, 143 on
SIGTERM; either way no output, temporary file or created folder is left behind).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
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

_ALIGN_EPILOG = """\
representation (--use-rep):
  auto          the default: position (.obsm["spatial"]) and expression PCs of
                the shared genes, expression weighted by how much it adds to
                position (hr.tl.align's use_rep="auto"); expression only when a
                file has no coordinates
  KEY           align on .obsm[KEY] ("X" for the expression matrix); with
                X_pca, a joint PCA of the shared genes is computed when
                either file lacks .obsm["X_pca"]
  KEY=WEIGHT    repeat to combine representations, e.g.
                  --use-rep X_pca=1 --use-rep spatial=0.5
                each one is centred and scaled jointly, then weighted
                (hr.tl.align(use_rep={"X_pca": 1, "spatial": 0.5}))

output: --out gets the first input (A) and --out-b the second (B), each
with the alignment stored under --key-added: .uns[KEY] (parameters, partner
positions and names, cost, runtime), .obs[KEY_match] (the partner's obs name)
and .obsm[KEY_labels] (co-clusters per level); pass both outputs to
`hiref transfer`. Outputs are written atomically; inputs are never modified.

example:
  hiref align slice1.h5ad slice2.h5ad --out aligned/slice1.h5ad --use-rep spatial
  hiref transfer aligned/slice1.h5ad aligned/slice1_b.h5ad --out pred.h5ad

threads: the engine uses the cores other work leaves free; HIREF_NUM_THREADS=N
  hiref align ... fixes the count.

distributed (--distributed): start one process per GPU or CPU share with torchrun,
  torchrun --nproc-per-node 4 -m hiref.cli align A.h5ad B.h5ad --out out.h5ad --distributed
every process reads both files and works on its slice of the cells; rank 0
writes the outputs (squared Euclidean cost and --unbalanced partial only).
"""

_TRANSFER_EPILOG = """\
Both inputs must be outputs of one `hiref align` run (aligned under --key).
The result has TARGET's cells (obs_names) and SOURCE's genes: .X holds each
target cell's partner's expression (NaN/empty rows for unmatched cells),
.obs[KEY_matched], .obs[KEY_source] (the partner's obs name), one column per
--obs and TARGET's .obsm[--spatial-key]. Put --genes/--obs after the input
files, or end their lists with --. Output is written atomically.

example:
  hiref transfer a_aligned.h5ad b_aligned.h5ad --out pred.h5ad --genes Actb Gfap --obs cell_type
"""


class CliError(Exception):
    """A problem to report as one line, without a traceback."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _rep(text: str) -> tuple[str, float | None]:
    """Parse one ``--use-rep`` value: ``KEY`` or ``KEY=WEIGHT`` (a positive number)."""
    key, sep, weight = text.rpartition("=")
    if not sep:
        key, weight = text, ""
    if not key:
        msg = f"expected KEY or KEY=WEIGHT, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    if not sep:
        return key, None
    try:
        value = float(weight)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        msg = f"the weight of {key!r} must be a positive number, got {weight!r}"
        raise argparse.ArgumentTypeError(msg)
    return key, value


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
    from .engine.checks import SEED_LIMIT

    try:
        value = int(text)
    except ValueError:
        msg = f"invalid int value: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0 <= value < SEED_LIMIT:
        msg = f"must be an int from 0 to {SEED_LIMIT - 1}, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from ._demo import PAIRS

    parser = _Parser(prog="hiref", description="One-to-one alignment by Hierarchical Refinement.")
    parser.add_argument("--version", action="version", version=f"hiref {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,align,transfer}")
    _add_demo(sub, PAIRS)
    _add_align(sub)
    _add_transfer(sub)
    return parser


def _add_demo(sub: argparse._SubParsersAction, pairs: dict) -> None:
    demo = sub.add_parser("demo", help="align a built-in synthetic pair, report cost and time, write a figure")
    demo.add_argument("--dataset", choices=sorted(pairs), default="halfmoon_scurve", help="synthetic pair")
    demo.add_argument("--n", type=int, default=2048, help="points per side (default 2048)")
    demo.add_argument("--seed", type=_seed, default=0, help="random seed, 0 to 2**32 - 1 (default 0)")
    demo.add_argument("--out", default="hiref_demo.png", help="figure path (default hiref_demo.png)")
    demo.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    demo.add_argument("--no-exact", action="store_true", help="skip the exact solver used to report the gap")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_align(sub: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    align = sub.add_parser(
        "align",
        help="match the cells of two .h5ad files one to one (hr.tl.align) and write both with the matching",
        description="Match the cells of two .h5ad files one to one by Hierarchical Refinement (hr.tl.align).",
        epilog=_ALIGN_EPILOG,
        formatter_class=raw,
    )
    align.add_argument("adata1", metavar="A.h5ad", help="first dataset (the source)")
    align.add_argument("adata2", metavar="B.h5ad", help="second dataset (the target)")
    out = align.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="PATH", help="where to write A with the alignment (required)")
    out.add_argument(
        "--out-b", metavar="PATH", default=None, help="where to write B with the alignment (default: <out stem>_b.h5ad)"
    )
    out.add_argument("--overwrite", action="store_true", help="replace existing output files (never the inputs)")
    opts = align.add_argument_group("alignment")
    opts.add_argument(
        "--use-rep",
        action="append",
        type=_rep,
        metavar="KEY[=WEIGHT]",
        help="representation to align on; repeat with weights to combine (default: auto; see below)",
    )
    opts.add_argument(
        "--spatial-key",
        default=None,
        metavar="KEY",
        help="obsm key of the coordinates copied to the partner as .obsm[KEY_partner_spatial] "
        "(default: spatial, skipped if a file lacks it; a key given explicitly must exist)",
    )
    opts.add_argument("--key-added", default="hiref", metavar="KEY", help="name of the alignment (default: hiref)")
    opts.add_argument(
        "--layer", default=None, metavar="LAYER", help="expression layer for use-rep X and a joint PCA (default: .X)"
    )
    opts.add_argument(
        "--n-pcs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="PCs of a computed joint PCA (default: 50; for use-rep auto one per 20 cells fitted, at most 100)",
    )
    opts.add_argument("--seed", type=_seed, default=0, help="random seed, 0 to 2**32 - 1 (default: 0)")
    opts.add_argument(
        "--device", default=None, help="torch device: cpu, cuda or cuda:N (default: cuda if available, else cpu)"
    )
    opts.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_solver_options(align.add_argument_group("solver options (hr.engine.SolveOptions)"))
    opts.add_argument(
        "--distributed",
        action="store_true",
        help="run on the processes of torchrun (e.g. torchrun --nproc-per-node 4 -m hiref.cli align ...); "
        "rank 0 writes the outputs",
    )


def _add_transfer(sub: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    transfer = sub.add_parser(
        "transfer",
        help="predict TARGET's cells from their partners in SOURCE (hr.tl.transfer)",
        description="Carry expression and annotations from SOURCE to TARGET across a stored alignment "
        "(hr.tl.transfer).",
        epilog=_TRANSFER_EPILOG,
        formatter_class=raw,
    )
    transfer.add_argument("source", metavar="SOURCE.h5ad", help="aligned dataset to take expression from")
    transfer.add_argument("target", metavar="TARGET.h5ad", help="aligned dataset whose cells are predicted")
    transfer.add_argument("--out", required=True, metavar="PATH", help="where to write the prediction (required)")
    transfer.add_argument("--overwrite", action="store_true", help="replace an existing output file (never an input)")
    transfer.add_argument("--key", default="hiref", help="--key-added of `hiref align` (default: hiref)")
    transfer.add_argument(
        "--genes", nargs="+", action="extend", default=None, metavar="GENE", help="source genes to carry (default: all)"
    )
    transfer.add_argument(
        "--obs",
        nargs="+",
        action="extend",
        default=None,
        metavar="COL",
        help="source .obs columns to carry (default: none)",
    )
    transfer.add_argument("--layer", default=None, help="source expression layer (default: .X)")
    transfer.add_argument(
        "--spatial-key",
        default=None,
        metavar="KEY",
        help="target coordinates to copy (default: spatial, skipped if TARGET lacks it; a key given explicitly "
        "must exist)",
    )


# ---------------------------------------------------------------------------------------- checks


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


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _int_or_none(text: str) -> int | str:
    """An int, or ``"none"`` (which :func:`_solver` turns into ``None``)."""
    if text.lower() == "none":
        return "none"
    try:
        return int(text)
    except ValueError:
        msg = f"expected an integer or 'none', got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _add_solver_options(group: argparse._ArgumentGroup) -> None:
    """One flag per command-line field of :class:`hiref.engine.SolveOptions`, e.g. ``--leaf-size``."""
    import dataclasses

    from .engine import SolveOptions

    for f in dataclasses.fields(SolveOptions):
        meta = f.metadata
        if not meta.get("cli"):
            continue
        text = meta["help"] if "default:" in meta["help"] else f"{meta['help']} (default: {f.default})"
        kwargs: dict = {"default": None, "help": text}
        if meta["choices"]:
            kwargs["choices"] = list(meta["choices"])
        elif isinstance(f.default, bool) or f.type == "bool | None":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.name == "schedule":
            kwargs.update(nargs="+", type=int, metavar="RANK")
        elif f.default is None or f.name == "sketch_dim":
            kwargs.update(type=_int_or_none, metavar="N")
        else:
            kwargs.update(type=type(f.default), metavar="N" if isinstance(f.default, int) else "X")
        group.add_argument(_flag(f.name), dest=f"solver_{f.name}", **kwargs)


def _solver(args: argparse.Namespace) -> dict[str, object]:
    """The solver options given on the command line, checked; errors name the flag."""
    from .engine import SolveOptions

    given = {name: getattr(args, f"solver_{name}") for name in SolveOptions.names() if hasattr(args, f"solver_{name}")}
    given = {name: None if value == "none" else value for name, value in given.items() if value is not None}
    try:
        SolveOptions(**given)
    except (TypeError, ValueError) as err:
        text = re.sub(r"`([a-z_]+)`", lambda m: f"`{_flag(m.group(1))}`", str(err))
        name = next((n for n in given if f"`{_flag(n)}`" in text), None)
        msg = f"argument {_flag(name)}: {text}" if name else text
        raise CliError(msg) from err
    return given


def _check_device(device: str | None) -> None:
    from .engine.checks import resolve_device

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
    from ._io import atomic_outputs

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


# -------------------------------------------------------------------------------------- commands


def _use_rep(items: Sequence[tuple[str, float | None]] | None) -> str | dict[str, float]:
    """``--use-rep`` values as ``hr.tl.align`` takes them: a key, or a dict of keys to weights."""
    if not items:
        return "auto"
    keys = [key for key, _ in items]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        msg = f"argument --use-rep: {duplicated[0]!r} given more than once"
        raise CliError(msg)
    if len(items) == 1 and items[0][1] is None:
        return items[0][0]
    return {key: 1.0 if weight is None else weight for key, weight in items}


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


def _close_process_group() -> None:
    # Left open, gloo's threads can outlive the interpreter and abort the process at exit.
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _default_out_b(out: str) -> str:
    path = Path(out)
    return str(path.with_name(f"{path.stem}_b{path.suffix or '.h5ad'}"))


def _run_align(args: argparse.Namespace) -> int:
    from .tl import align

    t0 = time.perf_counter()
    use_rep = _use_rep(args.use_rep)
    if not args.key_added:
        msg = "argument --key-added: must not be empty"
        raise CliError(msg)
    out_b = args.out_b if args.out_b is not None else _default_out_b(args.out)
    inputs = _check_inputs([args.adata1, args.adata2])
    outputs = _check_outputs([args.out, out_b], inputs, overwrite=args.overwrite)
    _check_device(args.device)
    solver = _solver(args)
    adata1, adata2 = _read(inputs[0]), _read(inputs[1])
    spatial_key = "spatial" if args.spatial_key is None else args.spatial_key
    if args.spatial_key is not None:
        for path, adata in zip(inputs, (adata1, adata2), strict=True):
            if spatial_key not in adata.obsm:
                msg = (
                    f"argument --spatial-key: {path} has no .obsm[{spatial_key!r}] "
                    f"(available: {sorted(adata.obsm.keys()) or 'none'})"
                )
                raise CliError(msg)
    try:
        align(
            adata1,
            adata2,
            use_rep=use_rep,
            spatial_key=spatial_key,
            key_added=args.key_added,
            layer=args.layer,
            n_pcs=args.n_pcs,
            random_state=args.seed,
            device=args.device,
            progress=not args.quiet,
            solver=solver,
            **({"distributed": True} if args.distributed else {}),
        )
    except (KeyError, ValueError, TypeError) as err:
        raise _api_error(err, {"adata1": inputs[0], "adata2": inputs[1]}) from err
    except RuntimeError as err:
        if not args.distributed:
            raise
        raise CliError(str(err)) from err
    if args.distributed:
        rank = _rank()
        _close_process_group()
        if rank != 0:
            return 0  # every process holds the same alignment; rank 0 writes it
    _write([(adata1, outputs[0]), (adata2, outputs[1])], overwrite=args.overwrite)
    entry = adata1.uns[args.key_added]
    rep = use_rep if isinstance(use_rep, str) else json.dumps(use_rep)
    print(f"hiref align: {inputs[0]} ({adata1.n_obs} cells) with {inputs[1]} ({adata2.n_obs} cells)")
    print(f"  use_rep {rep}   cost {entry['params']['cost']}   seed {args.seed}")
    print(
        f"  matched {entry['n_matched']} pairs   mean cost {entry['cost']:.6g}   "
        f"time {entry['runtime']:.2f} s (total {time.perf_counter() - t0:.2f} s)"
    )
    print(f"  wrote {outputs[0]} (A) and {outputs[1]} (B), alignment key {args.key_added!r}")
    return 0


def _check_aligned(adata: AnnData, path: Path, args: argparse.Namespace) -> None:
    from ._keys import Keys

    entry = adata.uns.get(Keys(args.key).uns)
    if isinstance(entry, dict) and "partner" in entry:
        return
    found = sorted(k for k, v in adata.uns.items() if isinstance(v, dict) and "partner" in v)
    also = f"; alignments found: {', '.join(found)} (pass --key)" if found else ""
    msg = (
        f"{path} has no alignment under key {args.key!r} (.uns[{args.key!r}]){also}; run "
        f"`hiref align {args.source} {args.target} --out A.h5ad --out-b B.h5ad --key-added {args.key}` "
        "first and pass its two outputs"
    )
    raise CliError(msg)


def _run_transfer(args: argparse.Namespace) -> int:
    from ._keys import TransferKeys
    from .tl import transfer

    inputs = _check_inputs([args.source, args.target])
    (output,) = _check_outputs([args.out], inputs, overwrite=args.overwrite)
    if not args.key:
        msg = "argument --key: must not be empty"
        raise CliError(msg)
    source, target = _read(inputs[0]), _read(inputs[1])
    _check_aligned(source, inputs[0], args)
    _check_aligned(target, inputs[1], args)
    if args.spatial_key is not None and args.spatial_key not in target.obsm:
        msg = (
            f"argument --spatial-key: {inputs[1]} has no .obsm[{args.spatial_key!r}] "
            f"(available: {sorted(target.obsm.keys()) or 'none'})"
        )
        raise CliError(msg)
    try:
        pred = transfer(
            source,
            target,
            key=args.key,
            genes=args.genes,
            layer=args.layer,
            obs=args.obs,
            spatial_key=args.spatial_key or "spatial",
        )
    except (KeyError, ValueError, TypeError) as err:
        raise _api_error(err, {"adata_source": inputs[0], "adata_target": inputs[1]}) from err
    _write([(pred, output)], overwrite=args.overwrite)
    matched = int(pred.obs[TransferKeys(args.key).matched].sum())
    print(f"hiref transfer: {pred.n_obs} cells of {inputs[1]} predicted from {inputs[0]}")
    extra = f" and {len(args.obs)} obs column(s)" if args.obs else ""
    print(f"  {pred.n_vars} genes{extra}   {matched} of {pred.n_obs} cells matched")
    print(f"  wrote {output}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from matplotlib.backend_bases import FigureCanvasBase

    from ._demo import run

    _check_outputs([args.out], [], overwrite=True)
    fmt = Path(args.out).suffix[1:].lower() or "png"
    if fmt not in FigureCanvasBase.get_supported_filetypes():
        msg = f"argument --out: cannot write a figure as .{fmt} (use .png, .pdf or .svg)"
        raise CliError(msg)
    _check_device(args.device)
    try:
        run(
            dataset=args.dataset,
            n=args.n,
            seed=args.seed,
            out=args.out,
            device=args.device,
            exact=not args.no_exact,
            progress=not args.quiet,
        )
    except (ValueError, TypeError) as err:
        raise CliError(str(err)) from err
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _run_demo,
    "align": _run_align,
    "transfer": _run_transfer,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hiref`` command; returns the exit status.

    Parameters
    ----------
    argv
        The arguments after ``hiref`` (default: ``sys.argv[1:]``).

    Returns
    -------
    0 on success, 2 on an error (reported as one line on stderr), 130 when interrupted (Ctrl-C,
    also while starting up) and 143 on SIGTERM; interrupted runs leave no output, temporary file
    or created folder behind. Usage
    errors found by argparse (unknown option, bad choice) raise :class:`SystemExit` with status 2.
    """
    prog = "hiref"
    handler = signal.getsignal(signal.SIGTERM)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        # SIGTERM (schedulers, `timeout`) unwinds like Ctrl-C, so temporary outputs are removed.
        signal.signal(signal.SIGTERM, _terminate)
    try:
        args = _parser().parse_args(argv)
        prog = f"hiref {args.command}"
        return _COMMANDS[args.command](args)
    except CliError as err:
        text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"{prog}: error: {text}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, handler)


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM while :func:`main` runs."""


def _terminate(signum: int, frame: object) -> NoReturn:
    raise Terminated


if __name__ == "__main__":
    sys.exit(main())
