"""``hiref align``: match the cells of two .h5ad files (:func:`hiref.tl.align`) and write both."""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path

from hiref._keys import ALIGN_KEY
from hiref.engine.certify import describe_bound

from ._common import (
    CliError,
    _api_error,
    _check_device,
    _check_inputs,
    _check_outputs,
    _positive_int,
    _read,
    _seed,
    _write,
)

_ALIGN_EPILOG = """\
representation (--use-rep):
  auto          the default: position (.obsm["spatial"]) and expression PCs of
                the shared genes, expression weighted by how much it adds to
                position (hr.tl.align's use_rep="auto"); expression only when
                neither file has coordinates (with a warning); for sections
                of one tissue, register them first (hr.pp.register) and
                pass --spatial-key spatial_registered, as the README does
  KEY           align on .obsm[KEY] ("X" for the expression matrix); with
                X_pca, a joint PCA of the shared genes is computed when
                either file lacks .obsm["X_pca"]
  KEY=WEIGHT    repeat to combine representations, e.g.
                  --use-rep X_pca=1 --use-rep spatial=0.5
                each one is centred and scaled jointly, then weighted
                (hr.tl.align(use_rep={"X_pca": 1, "spatial": 0.5}))

output: --out gets the first input (A) and --out-b the second (B), each
with the alignment stored under --key-added: .uns[KEY] (parameters, partner
positions, cost, runtime), .obs[KEY_match] (the partner's obs name),
.obs[KEY_cost] (the cost of each cell's pair), .obs[KEY_confidence] (with
coordinates: how well each cell's neighbourhood moved together),
.obsm[KEY_labels] (co-clusters per level), .obsm[KEY_partner_spatial] (the
partner's coordinates) and, when a joint PCA was computed, .obsm[KEY_pca];
pass both outputs to `hiref transfer`. Outputs are written atomically;
inputs are never modified.

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
        "(default: spatial; an error if only one file has it, a warning if neither has it; a key given "
        "explicitly must exist in both)",
    )
    opts.add_argument(
        "--key-added", default=ALIGN_KEY, metavar="KEY", help=f"name of the alignment (default: {ALIGN_KEY})"
    )
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

    from hiref.engine import SolveOptions

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
    from hiref.engine import SolveOptions

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
    from hiref.tl import align

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
    print(f"  optimality: {describe_bound(float(entry.get('gap_bound', float('nan'))))}")
    print(f"  wrote {outputs[0]} (A) and {outputs[1]} (B), alignment key {args.key_added!r}")
    return 0
