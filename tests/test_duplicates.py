"""No block of 8 or more lines repeated in ``src/`` (pylint's ``duplicate-code`` check, R0801).

Skipped when pylint is not installed (it is in the ``test`` extra).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pylint")

SRC = Path(__file__).resolve().parents[1] / "src" / "hiref"
MIN_LINES = 8


def duplicate_report(folder: Path) -> str:
    """pylint's duplicate-code messages for ``folder`` (empty when nothing repeats)."""
    command = [
        sys.executable, "-m", "pylint", "--disable=all", "--enable=duplicate-code",
        f"--min-similarity-lines={MIN_LINES}", "--score=n", "--persistent=n", str(folder),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode in (0, 8), result.stderr  # 8: refactor messages found
    return result.stdout.strip()


def test_no_repeated_blocks_in_src():
    report = duplicate_report(SRC)
    assert not report, f"blocks of {MIN_LINES}+ lines repeated in src/ (move them into one function):\n{report}"


def test_the_check_finds_a_repeated_block(tmp_path):
    block = "".join(f"    value_{i} = values[{i}] * {i} + offset\n" for i in range(MIN_LINES + 1))
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("one", "two"):
        (package / f"{name}.py").write_text(f"def {name}(values, offset):\n{block}    return value_0\n")
    assert "duplicate-code" in duplicate_report(package)
