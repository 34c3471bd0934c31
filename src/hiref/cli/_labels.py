"""``hiref labels``: carry an annotation across a stored alignment (:func:`hiref.tl.transfer_labels`)."""

from __future__ import annotations

import argparse

from hiref._keys import ALIGN_KEY

from ._common import _api_error, _write
from ._transfer import _read_aligned

_LABELS_EPILOG = """\
Both inputs must be outputs of one `hiref align` run (aligned under --key).
The output is TARGET with two new .obs columns: KEY_OBS (the annotation carried
from SOURCE by weighted votes of the source cells where the alignment moves each
cell, with the evidence of a classifier of SOURCE's labels from expression; not
one-to-one) and KEY_OBS_agreement (the share of the votes' weight for it), and
their record in .uns[KEY_OBS]. --key-added renames them. Output is written
atomically.

example:
  hiref labels a_aligned.h5ad b_aligned.h5ad --obs cell_type --out b_labelled.h5ad
"""


def _weight(text: str) -> float | str:
    """``--expression-weight``: 'auto' or a number (its range is checked by the API)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        msg = f"expected 'auto' or a number, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _add_labels(sub: argparse._SubParsersAction) -> None:
    labels = sub.add_parser(
        "labels",
        help="carry an .obs annotation from SOURCE to TARGET (hr.tl.transfer_labels)",
        description="Carry a categorical .obs column from SOURCE to every cell of TARGET by weighted votes of the "
        "source cells where the alignment moves it (hr.tl.transfer_labels).",
        epilog=_LABELS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    labels.add_argument("source", metavar="SOURCE.h5ad", help="aligned dataset holding the annotation")
    labels.add_argument("target", metavar="TARGET.h5ad", help="aligned dataset that receives it")
    labels.add_argument("--obs", required=True, metavar="COL", help="the source .obs column to carry (required)")
    labels.add_argument("--out", required=True, metavar="PATH", help="where to write the labelled TARGET (required)")
    labels.add_argument("--overwrite", action="store_true", help="replace an existing output file (never an input)")
    labels.add_argument("--key", default=ALIGN_KEY, help=f"--key-added of `hiref align` (default: {ALIGN_KEY})")
    labels.add_argument("--n-neighbors", type=int, default=4, metavar="K", help="source cells voting (default: 4)")
    labels.add_argument(
        "--expression-weight", type=_weight, default="auto", metavar="W",
        help="weight of the expression evidence against the votes, a number >= 0 or 'auto' (default: auto, "
        "chosen by cross-validation on SOURCE's labels; 0: votes alone)",
    )  # fmt: skip
    labels.add_argument("--key-added", default=None, metavar="NAME", help="name of the column (default: KEY_OBS)")


def _run_labels(args: argparse.Namespace) -> int:
    from hiref._keys import LabelKeys
    from hiref.tl import transfer_labels

    inputs, output, source, target = _read_aligned(args)
    try:
        transfer_labels(source, target, args.obs, key=args.key, n_neighbors=args.n_neighbors,
                        expression_weight=args.expression_weight, key_added=args.key_added)  # fmt: skip
    except (KeyError, ValueError, TypeError) as err:
        raise _api_error(err, {"adata_source": inputs[0], "adata_target": inputs[1]}) from err
    _write([(target, output)], overwrite=args.overwrite)
    keys = LabelKeys(args.key_added) if args.key_added else LabelKeys.default(args.key, args.obs)
    agreement = target.obs[keys.agreement]
    print(f"hiref labels: .obs[{args.obs!r}] of {inputs[0]} carried to the {target.n_obs} cells of {inputs[1]}")
    print(f"  .obs[{keys.obs!r}]; median agreement {agreement.median():.2f}, unanimous {(agreement == 1).mean():.0%}")
    record = target.uns[keys.uns]
    print(f"  expression weight {record['expression_weight']:g} ({record['expression']['rule']})")
    print(f"  wrote {output}")
    return 0
