"""``hiref transfer``: carry expression across a stored alignment (:func:`hiref.tl.transfer`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from hiref._keys import ALIGN_KEY

from ._common import CliError, _api_error, _check_inputs, _check_outputs, _read, _write

if TYPE_CHECKING:
    from anndata import AnnData

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
    transfer.add_argument("--key", default=ALIGN_KEY, help=f"--key-added of `hiref align` (default: {ALIGN_KEY})")
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


def _check_aligned(adata: AnnData, path: Path, args: argparse.Namespace) -> None:
    from hiref._keys import Keys
    from hiref.get._matching import is_alignment

    if is_alignment(adata.uns.get(Keys(args.key).uns)):
        return
    found = sorted(k for k, v in adata.uns.items() if is_alignment(v))
    also = f"; alignments found: {', '.join(found)} (pass --key)" if found else ""
    msg = (
        f"{path} has no alignment under key {args.key!r} (.uns[{args.key!r}]){also}; run "
        f"`hiref align {args.source} {args.target} --out A.h5ad --out-b B.h5ad --key-added {args.key}` "
        "first and pass its two outputs"
    )
    raise CliError(msg)


def _read_aligned(args: argparse.Namespace) -> tuple[list[Path], Path, AnnData, AnnData]:
    """The checked input paths, the output path, and both inputs read, each holding the alignment ``--key``."""
    inputs = _check_inputs([args.source, args.target])
    (output,) = _check_outputs([args.out], inputs, overwrite=args.overwrite)
    if not args.key:
        msg = "argument --key: must not be empty"
        raise CliError(msg)
    source, target = _read(inputs[0]), _read(inputs[1])
    _check_aligned(source, inputs[0], args)
    _check_aligned(target, inputs[1], args)
    return inputs, output, source, target


def _run_transfer(args: argparse.Namespace) -> int:
    from hiref._keys import TransferKeys
    from hiref.tl import transfer

    inputs, output, source, target = _read_aligned(args)
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
