"""The engine's thread policy: applied during a solve, restored after it, overridable, no global side effects."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

import hiref as hr
from hiref.engine import threads as policy


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _seen_during_solve(monkeypatch, **kwargs) -> list[int]:
    """Thread counts torch had at every stage of a solve (recorded through the driver's stage hook)."""
    seen: list[int] = []
    real = policy.engine_threads

    def recording(*args, **kw):
        context = real(*args, **kw)

        class Wrapper:
            def __enter__(self):
                adjust = context.__enter__()

                def hook():
                    adjust()
                    seen.append(torch.get_num_threads())

                return hook

            def __exit__(self, *exc):
                return context.__exit__(*exc)

        return Wrapper()

    monkeypatch.setattr(sys.modules["hiref.engine.solve"], "engine_threads", recording)
    X, Y = hr.datasets.halfmoon_scurve(600, seed=0)
    hr.solve(X, Y, progress=False, **kwargs)
    return seen


def test_explicit_threads_are_applied_and_restored(two_threads, monkeypatch):
    seen = _seen_during_solve(monkeypatch, threads=1)
    assert seen
    assert set(seen) == {1}
    assert torch.get_num_threads() == 2


def test_environment_variable_fixes_the_count(two_threads, monkeypatch):
    monkeypatch.setenv(policy.ENV, "1")
    assert set(_seen_during_solve(monkeypatch)) == {1}
    assert torch.get_num_threads() == 2


def test_automatic_choice_leaves_busy_cores_alone(two_threads, monkeypatch):
    monkeypatch.delenv(policy.ENV, raising=False)
    monkeypatch.setattr(policy, "usable_cpus", lambda: 2)
    monkeypatch.setattr(policy, "busy_elsewhere", lambda: 0)
    assert set(_seen_during_solve(monkeypatch)) == {2}  # alone: torch's setting is kept
    monkeypatch.setattr(policy, "busy_elsewhere", lambda: 1)
    assert set(_seen_during_solve(monkeypatch)) == {1}  # one core busy elsewhere
    monkeypatch.setattr(policy, "busy_elsewhere", lambda: 5)
    assert set(_seen_during_solve(monkeypatch)) == {1}  # never below one
    assert torch.get_num_threads() == 2


def test_restored_after_an_error(two_threads):
    X, Y = hr.datasets.halfmoon_scurve(100, seed=0)
    with pytest.raises(ValueError, match="threads"):
        hr.solve(X, Y, threads=0, progress=False)

    def failing(x, y):
        msg = "cost failed"
        raise RuntimeError(msg)

    with pytest.raises(RuntimeError, match="cost failed"):
        hr.solve(X, Y, cost=failing, threads=1, progress=False)
    assert torch.get_num_threads() == 2


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(policy.ENV, "many")
    X, Y = hr.datasets.halfmoon_scurve(100, seed=0)
    with pytest.raises(ValueError, match=policy.ENV):
        hr.solve(X, Y, progress=False)


def test_same_result_for_any_fixed_count_on_2d():
    X, Y = hr.datasets.halfmoon_scurve(800, seed=1)
    one = hr.solve(X, Y, threads=1, progress=False)
    two = hr.solve(X, Y, threads=2, progress=False)
    np.testing.assert_array_equal(one.perm, two.perm)


def _fake_proc(root, loadavg, states):
    """A /proc with ``loadavg`` and one task per entry of ``states`` (R: running, S: sleeping)."""
    (root / "self" / "task").mkdir(parents=True)
    (root / "loadavg").write_text(loadavg)
    for i, state in enumerate(states):
        (root / "self" / "task" / str(i)).mkdir()
        (root / "self" / "task" / str(i) / "stat").write_text(f"{100 + i} (python (main)) {state} 1 2 3")


@pytest.mark.parametrize(
    ("loadavg", "states", "expected"),
    [
        ("1.20 0.80 0.50 7/512 4242\n", "RSR", 5),  # 7 running, 2 of them ours
        ("0.10 0.10 0.10 1/90 4242\n", "RR", 0),  # the count lags behind our own threads: never negative
        ("garbled\n", "R", 0),
    ],
)
def test_busy_elsewhere_counts_other_running_tasks(tmp_path, monkeypatch, loadavg, states, expected):
    _fake_proc(tmp_path, loadavg, states)
    real_path = policy.Path
    monkeypatch.setattr(policy, "Path", lambda p: real_path(str(p).replace("/proc", str(tmp_path), 1)))
    assert policy.busy_elsewhere() == expected


@pytest.mark.parametrize(("reads", "expected", "taken"), [([1, 0, 1, 1], 0, 2), ([2, 1, 3, 2], 1, 4), ([0, 5], 0, 1)])
def test_busy_elsewhere_takes_the_least_of_a_few_reads(monkeypatch, reads, expected, taken):
    # a task seen for an instant (or one of our own threads falling asleep between the reads)
    # must not cost a core for a whole stage; a machine busy at every read keeps its count
    left = list(reads)
    monkeypatch.setattr(policy, "_busy_once", lambda: left.pop(0))
    monkeypatch.setattr(policy, "SAMPLE_GAP", 0.0)
    assert policy.busy_elsewhere() == expected
    assert len(reads) - len(left) == taken  # stops at the first idle read


def test_busy_elsewhere_reads_the_machine():
    """On the real /proc (a smoke test: the count itself moves; the arithmetic is checked above)."""
    busy = policy.busy_elsewhere()
    assert isinstance(busy, int)
    assert busy >= 0
    affinity = getattr(os, "sched_getaffinity", None)
    assert policy.usable_cpus() == (len(affinity(0)) if affinity else os.cpu_count())


def test_usable_cpus_is_the_affinity(monkeypatch):
    monkeypatch.setattr(policy.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert policy.usable_cpus() == 3
    monkeypatch.delattr(policy.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(policy.os, "cpu_count", lambda: None)
    assert policy.usable_cpus() == 1


@pytest.mark.parametrize(("total", "least", "threads"), [(10, 1, 2), (10, 4, 4), (3, 1, 8), (0, 1, 2), (5000, 1024, 3)])
def test_slices_cover_the_range_once(total, least, threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    seen = []
    try:
        policy.in_slices(total, lambda lo, hi: seen.append((lo, hi)), least=least)
    finally:
        torch.set_num_threads(previous)
    covered = sorted(i for lo, hi in seen for i in range(lo, hi))
    assert covered == list(range(total))
    assert len(seen) == max(1, min(threads, total // least))
