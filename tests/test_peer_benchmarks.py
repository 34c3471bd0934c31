"""The peer benchmark scripts (benchmarks/peers_real.py, benchmarks/peers_scale.py) import and run on a tiny case.

The peers (moscot, PASTE, POT) are never needed: their methods are checked to be skipped with a
reason when their package is missing (simulated here by naming a package that does not exist).
"""

from __future__ import annotations

import json

import pytest

from helpers import BENCHMARKS as BENCH
from helpers import load_benchmark


@pytest.fixture(scope="module")
def real():
    return load_benchmark("peers_real")


@pytest.fixture(scope="module")
def scale():
    return load_benchmark("peers_scale")


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
    assert table[1] == {"method": "scipy_lsa", "largest_n_done": 256, "stopped_at_n": 512, "why": "stopped: over 1 s",
                        "stop": None}  # fmt: skip
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


def _timed(method: str, seconds: dict[int, float], rss_gb: float = 1.0) -> list[dict]:
    return [{"n": n, "method": method, "status": "ok", "seconds": t, "rss_gb": rss_gb} for n, t in seconds.items()]


def test_scale_predicts_a_stop_from_the_growth(scale):
    # x6 per doubling: 36 s at 2^13 -> ~216 s at 2^14 (run it), ~1296 s at 2^15 (> 1.5 x 600 s: predicted stop)
    rows = _timed("scipy_lsa", {4096: 6.0, 8192: 36.0})
    guess = scale.predict(rows, "scipy_lsa", 16384)
    assert guess["growth_t"] == pytest.approx(6.0)
    assert guess["seconds"] == pytest.approx(216.0)
    assert scale.predicted_stop(rows, "scipy_lsa", 16384, limit=600, mem_gb=20) is None
    row = scale.predicted_stop(rows, "scipy_lsa", 32768, limit=600, mem_gb=20)
    assert row["stop"] == "predicted"
    assert row["status"] == "stopped: predicted ~1296 s > 600 s limit (measured growth x6.0 per doubling)"
    # under 1.5 x the limit it is run (and the real limit decides)
    assert scale.predicted_stop(rows, "scipy_lsa", 32768, limit=900, mem_gb=20) is None
    # one measured size is no growth: run
    assert scale.predict(rows[:1], "scipy_lsa", 8192) is None
    # memory: the dense n x n float64 cost of scipy is a floor (2^16: 34 GB) even when the RSS grew slowly
    row = scale.predicted_stop(_timed("scipy_lsa", {4096: 1.0, 8192: 1.0}), "scipy_lsa", 65536, limit=900, mem_gb=20)
    assert row["status"].startswith("stopped: predicted ~34 GB > 20 GB limit")
    assert scale.predict(_timed("hiref", {4096: 1.0, 8192: 1.0}), "hiref", 65536)["rss_gb"] == pytest.approx(1.0)


def test_scale_main_records_a_predicted_stop(scale, tmp_path, monkeypatch):
    # fake runs: hiref takes 1 s, 8 s, 64 s, ... (x8 per doubling): 2^10 predicted at 512 s > 1.5 x 100 s
    def fake_run(method, n, kind, seed, limit, mem_gb, free_gb=1.5):
        seconds = 8.0 ** (n.bit_length() - 8)
        return {"n": n, "method": method, "seed": seed, "seconds": seconds, "cpu_s": seconds, "rss_gb": 0.5,
                "gap_pct": 0.0, "true_pct": 100.0, "one_to_one": True, "status": "ok"}  # fmt: skip

    monkeypatch.setattr(scale, "run_one", fake_run)
    sizes = ["128", "256", "512", "1024", "2048"]
    out = ["--json", str(tmp_path / "s.json"), "--plot", str(tmp_path / "s.png")]
    payload = scale.main(["--n", *sizes, "--methods", "hiref", "--hiref-seeds", "0", "1", "--limit", "100", *out])
    rows = payload["rows"]
    assert [(r["n"], r.get("stop")) for r in rows] == [(128, None)] * 2 + [(256, None)] * 2 + [(512, None)] * 2 + [
        (1024, "predicted")
    ]
    assert rows[-1]["predicted_s"] == pytest.approx(512.0)
    assert payload["stops"][0] == {"method": "hiref", "largest_n_done": 512, "stopped_at_n": 1024,
                                   "why": rows[-1]["status"], "stop": "predicted"}  # fmt: skip
    assert [s["seeds"] for s in payload["hiref_seeds"]] == [2, 2, 2]
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["settings"]["limit_s"] == 100
    assert saved["settings"]["margin"] == 1.5
    assert (tmp_path / "s.png").stat().st_size > 0


def test_the_hour_wrapper_passes_flags_the_scripts_accept():
    # benchmarks/peers_hour.sh runs both scripts in one hour; a renamed option would only fail an hour in.
    import re
    import shutil
    import subprocess

    wrapper = (BENCH / "peers_hour.sh").read_text()
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(BENCH / "peers_hour.sh")], check=True)
    calls = re.findall(r"python (peers_\w+\.py)((?:[^\n]*\\\n)*[^\n]*)", wrapper)
    assert sorted(script for script, _ in calls) == ["peers_real.py", "peers_scale.py"]
    for script, arguments in calls:
        source = (BENCH / script).read_text()
        flags = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", arguments))
        assert flags, script
        for flag in flags:
            assert f'"{flag}"' in source, f"{script} has no option {flag}"
