"""The ``hiref`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from ._demo import PAIRS

    parser = argparse.ArgumentParser(prog="hiref", description="One-to-one alignment by Hierarchical Refinement.")
    parser.add_argument("--version", action="version", version=f"hiref {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="align a built-in synthetic pair, report cost and time, write a figure")
    demo.add_argument("--dataset", choices=sorted(PAIRS), default="halfmoon_scurve", help="synthetic pair")
    demo.add_argument("--n", type=int, default=2048, help="points per side (default 2048)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--out", default="hiref_demo.png", help="figure path (default hiref_demo.png)")
    demo.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    demo.add_argument("--no-exact", action="store_true", help="skip the exact solver used to report the gap")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hiref`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from ._demo import run

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
            print(f"hiref demo: error: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
