from __future__ import annotations

import subprocess
import sys

import matplotlib.image as mpimg
import pytest

from hiref.cli import main


def test_demo_reports_gap_and_writes_png(tmp_path, capsys):
    out = tmp_path / "figs" / "demo.png"
    assert main(["demo", "--n", "300", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "gap to exact" in text
    gap = float(text.split("gap to exact:")[1].split("%")[0])
    assert 0.0 <= gap < 3.0
    image = mpimg.imread(out)
    assert image.shape[0] > 200
    assert image.shape[1] > 600
    assert list(tmp_path.joinpath("figs").iterdir()) == [out]  # no temporary file left behind


def test_demo_errors(tmp_path, capsys):
    assert main(["demo", "--n", "0", "--out", str(tmp_path / "x.png"), "--quiet"]) == 2
    assert "`n` must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(SystemExit):
        main(["demo", "--dataset", "nope"])


def test_console_script_runs():
    cmd = [sys.executable, "-m", "hiref.cli", "--version"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert result.stdout.startswith("hiref ")
