"""The ``hiref`` command: ``hiref demo``, ``align``, ``transfer`` and ``labels``, one module per subcommand.

Every command validates its arguments and inputs before any expensive work, writes its outputs
atomically (see :func:`hiref._io.atomic_outputs`) and reports an error as one line
``hiref <command>: error: ...`` on stderr with exit status 2 (130 when interrupted, 143 on
SIGTERM; either way no output, temporary file or created folder is left behind).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

from ._align import _add_align, _rep, _run_align, _use_rep
from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED, CliError, _Parser
from ._demo import _add_demo, _run_demo
from ._labels import _add_labels, _run_labels
from ._transfer import _add_transfer, _run_transfer

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "CliError", "_rep", "_use_rep", "main"]


def _parser() -> argparse.ArgumentParser:
    from hiref._demo import PAIRS
    from hiref._version import __version__

    parser = _Parser(prog="hiref", description="One-to-one alignment by Hierarchical Refinement.")
    parser.add_argument("--version", action="version", version=f"hiref {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,align,transfer,labels}")
    _add_demo(sub, PAIRS)
    _add_align(sub)
    _add_transfer(sub)
    _add_labels(sub)
    return parser


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _run_demo,
    "align": _run_align,
    "transfer": _run_transfer,
    "labels": _run_labels,
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
