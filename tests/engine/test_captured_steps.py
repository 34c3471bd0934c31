"""Steps that CUDA replays from graphs issue no host synchronisation, checked on the CPU.

On CUDA, :func:`hiref.engine.repeat.repeat` and :func:`~hiref.engine.repeat.repeat_until`
capture their step as a CUDA graph. A step that reads a value on the host (``.item()``,
``nonzero``, a boolean mask, ``.numpy()``) cannot be captured: the capture fails, and every
later step of the process runs eagerly, one launch per operation (logged, not raised). Here the
whole solve runs on the CPU with the device path forced on, and every step handed to those two
functions runs under a dispatch mode that records such operations.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import hiref as hr
import hiref.engine
from hiref.engine import repeat as repeat_module
from hiref.engine.finish import auction, batched_search, integrate
from hiref.engine.split import lowrank

#: Operations whose result's size or value the host must read (a synchronisation on CUDA).
SYNCING = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "unique_consecutive",
           "equal", "is_nonzero", "repeat_interleave", "masked_scatter"}  # fmt: skip


#: Every call site's first steps are watched, then one in ``WATCH_EVERY`` (a watched step runs
#: every operation through Python: watching all 9,000 lockstep steps of the solve below took 22 s).
WATCH_FIRST, WATCH_EVERY = 64, 16


class _Syncs(TorchDispatchMode):
    """Records the synchronising operations dispatched while active."""

    def __init__(self, found: list[str]) -> None:
        super().__init__()
        self.found = found

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._overloadpacket.__name__
        indices = args[1] if name in ("index", "index_put", "index_put_") and len(args) > 1 else ()
        if name in SYNCING or any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
            self.found.append(name)
        return func(*args, **(kwargs or {}))


def _watched(found: list[str], steps: dict[str, int]):
    """``repeat`` and ``repeat_until`` whose steps run under :class:`_Syncs`, counted per caller."""
    eager_repeat, eager_until = repeat_module.repeat, repeat_module.repeat_until

    def watch(step):
        where = sys._getframe(2).f_code.co_filename.rsplit("hiref", 1)[-1]

        def watched():
            steps[where] = steps.get(where, 0) + 1
            if steps[where] > WATCH_FIRST and steps[where] % WATCH_EVERY:
                step()
                return
            host = (torch.Tensor.numpy, torch.Tensor.tolist, torch.Tensor.item)
            try:  # host copies, which the dispatcher does not see on the CPU
                for name, method in zip(("numpy", "tolist", "item"), host, strict=True):
                    setattr(torch.Tensor, name, lambda *a, _n=name, _m=method, **k: found.append(_n) or _m(*a, **k))
                with _Syncs(found):
                    step()
            finally:
                torch.Tensor.numpy, torch.Tensor.tolist, torch.Tensor.item = host

        return watched

    def repeat(step, times, *, device, capture=True):
        return eager_repeat(watch(step) if capture else step, times, device=device, capture=capture)

    def repeat_until(step, done, *, every, most, device, capture=True):
        return eager_until(
            watch(step) if capture else step, done, every=every, most=most, device=device, capture=capture
        )  # fmt: skip

    return repeat, repeat_until


@pytest.fixture
def watched_steps(monkeypatch):
    """Every engine module's ``repeat``/``repeat_until`` replaced by watching ones; yields (syncs, steps)."""
    for info in pkgutil.walk_packages(hiref.engine.__path__, "hiref.engine."):
        importlib.import_module(info.name)
    found: list[str] = []
    steps: dict[str, int] = {}
    repeat, repeat_until = _watched(found, steps)
    for name, module in list(sys.modules.items()):
        if name.startswith("hiref.engine.") and module is not None and module is not repeat_module:
            for attr, new in (("repeat", repeat), ("repeat_until", repeat_until)):
                if getattr(module, attr, None) is getattr(repeat_module, attr):
                    monkeypatch.setattr(module, attr, new)
    return found, steps


def test_captured_steps_never_synchronise(watched_steps, monkeypatch):
    found, steps = watched_steps
    monkeypatch.setattr(batched_search, "on_device", lambda device: True)
    monkeypatch.setattr(auction, "LOCKSTEP_MIN_WORK", 1)  # the leaves by lockstep searches
    monkeypatch.setattr(integrate, "BASE_POINTS", 500)  # the price integral by conjugate gradients
    monkeypatch.setattr(lowrank, "FUSED_CPU", False)  # the levels' torch step, as on a GPU
    X, Y, truth = hr.datasets.planted_pair(6000, kind="density", seed=2)
    m = hr.solve(X, Y, progress=False)
    opt = float(((X - Y[truth]) ** 2).sum(1).mean())
    assert m.cost / opt - 1 <= 1e-6
    # every kind of captured step ran: the levels' descent, the leaves' lockstep searches, the
    # conjugate gradients
    ran = " ".join(steps)
    for where in ("lowrank", "lockstep", "integrate"):
        assert where in ran, f"no step of {where} ran: {sorted(steps)}"
    assert found == [], f"captured steps synchronised: {sorted(set(found))}"


def test_the_watch_sees_a_synchronising_step(watched_steps):
    # the check above can fail: a step that reads a value on the host is caught
    found, _ = watched_steps
    state = torch.zeros(4)

    def step():
        state.add_(float(state.sum().item()) + 1.0)
        state[state > 2] = 0.0

    lowrank.repeat(step, 3, device=state.device)
    assert "item" in found
    assert "_local_scalar_dense" in found
    assert any(name.startswith("index_put") for name in found)
    np.testing.assert_array_equal(state.numpy(), np.ones(4))  # 1, then 6 (reset to 0), then 1
