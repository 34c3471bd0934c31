"""``python -m hiref.cli`` (and ``torchrun -m hiref.cli``): the ``hiref`` command."""

from __future__ import annotations

import sys

from hiref.cli import main

if __name__ == "__main__":
    sys.exit(main())
