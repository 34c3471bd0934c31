"""``hiref demo``: align a built-in synthetic pair, report cost and time, write a figure."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import CliError, _check_device, _check_outputs, _seed


def _add_demo(sub: argparse._SubParsersAction, pairs: dict) -> None:
    demo = sub.add_parser("demo", help="align a built-in synthetic pair, report cost and time, write a figure")
    demo.add_argument("--dataset", choices=sorted(pairs), default="halfmoon_scurve", help="synthetic pair")
    demo.add_argument("--n", type=int, default=2048, help="points per side (default 2048)")
    demo.add_argument("--seed", type=_seed, default=0, help="random seed, 0 to 2**32 - 1 (default 0)")
    demo.add_argument("--out", default="hiref_demo.png", help="figure path (default hiref_demo.png)")
    demo.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    demo.add_argument("--no-exact", action="store_true", help="skip the exact solver used to report the gap")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_demo(args: argparse.Namespace) -> int:
    from matplotlib.backend_bases import FigureCanvasBase

    from hiref._demo import run

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
