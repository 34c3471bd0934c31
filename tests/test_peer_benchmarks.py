"""The peer benchmark scripts (benchmarks/peers_real.py, benchmarks/peers_scale.py) import and run on a tiny case.

The peers (moscot, PASTE, POT) are never needed: their methods are checked to be skipped with a
reason when their package is missing (simulated here by naming a package that does not exist).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def real():
    return _load("peers_real")


@pytest.fixture(scope="module")
def scale():
    return _load("peers_scale")


def test_real_scores_a_tiny_case(real):
    rows = [real.child("tiny", method, real.DATA) for method in ("hiref_position", "scipy_lsa")]
    for row in rows:
        assert row["status"] == "ok"
        assert row["one_to_one"]
        assert 0.5 < row["accuracy"] <= 1
        assert -1 <= row["cosine"] <= 1
        assert row["distinct"] == row["n_target"] <= row["n_source"]
    assert rows[0]["accuracy"] >= rows[1]["accuracy"] - 0.1  # hiref near the exact optimum on position


def test_real_skips_missing_peers(real, tmp_path, monkeypatch):
    monkeypatch.setattr(real, "NEEDS", dict.fromkeys(real.NEEDS, "no_such_package_hiref_test"))
    out = tmp_path / "real.json"
    payload = real.main(["--cases", "tiny", "--methods", "moscot_sinkhorn,paste,pot_emd", "--json", str(out)])
    assert [r["status"] for r in payload["_rows"]] == ["skipped: no_such_package_hiref_test not installed"] * 3
    assert "machine" in json.loads(out.read_text())


def test_scale_runs_hiref_and_exact(scale, tmp_path):
    rows = [scale.child(method, 256, "density", 0) for method in ("hiref", "scipy_lsa")]
    assert rows[1]["gap_pct"] == pytest.approx(0, abs=1e-9)
    assert rows[1]["true_pct"] == 100
    assert 0 <= rows[0]["gap_pct"] < 5
    stopped = {"n": 512, "method": "scipy_lsa", "status": "stopped: over 1 s"}
    table = scale.stops([*rows, stopped], ["hiref", "scipy_lsa"])
    assert table[1] == {"method": "scipy_lsa", "largest_n_done": 256, "stopped_at_n": 512, "why": "stopped: over 1 s"}
    scale.plot([*rows, stopped], tmp_path / "scale.png", "test limits")
    assert (tmp_path / "scale.png").stat().st_size > 0


def test_scale_stops_a_method_past_its_limit(scale):
    row = scale.run_one("hiref", 256, "density", 0, limit=0.01, mem_gb=20)
    assert row["status"] == "stopped: over 0.01 s"


def test_scale_skips_missing_peers(scale, tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "NEEDS", dict.fromkeys(scale.NEEDS, "no_such_package_hiref_test"))
    payload = scale.main(["--n", "256", "--methods", "moscot_sinkhorn,pot_emd", "--json", str(tmp_path / "s.json")])
    assert {r["status"] for r in payload["rows"]} == {"skipped: no_such_package_hiref_test not installed"}
    assert payload["stops"][0]["largest_n_done"] is None
