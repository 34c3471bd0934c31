"""Run by ``torchrun`` from ``test_distributed.py``: every rank solves its rows of a few cases.

Usage: ``torchrun --standalone --nproc-per-node W distributed_worker.py OUT_DIR``. Each rank
writes ``OUT_DIR/<case>_rank<k>.npz`` with its matching, or the error it raised.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

import hiref as hr
from hiref.engine.distributed.comm import row_ranges


def cases() -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """The inputs and options of every case (the test rebuilds them for the single-process run)."""
    X, Y = hr.datasets.halfmoon_scurve(8192, seed=3)
    Xs, Ys = hr.datasets.halfmoon_scurve(3000, seed=4)
    extra = hr.datasets.halfmoon_scurve(400, seed=5)[0]
    rng = np.random.default_rng(0)
    G = rng.normal(size=(3000, 40))
    H = rng.normal(size=(3000, 40)) + 0.5 * np.sign(rng.normal(size=(3000, 1)))
    return {
        "default": (X, Y, {}),
        "polish": (X, Y, {"coarse_size": 1024}),
        "swapped": (np.concatenate([Xs, extra]), Ys, {}),
        "rank3": (Xs, Ys, {"schedule": [3, 3, 2], "leaf_size": 256, "coarse_size": 512}),
        "sketch": (G, H, {"sketch_dim": 8}),
        "refine": (Xs, Ys, {"refine": True}),
    }


def main(out: Path) -> None:
    torch.set_num_threads(1)
    for name, (X, Y, options) in cases().items():
        m = _solve(X, Y, options)
        _save(out, name, m)
    # Bad input on one rank only: every rank must raise, none may hang.
    X, Y = hr.datasets.halfmoon_scurve(1000, seed=0)
    rank, world = _rank()
    X = X[slice(*row_ranges(len(X), world)[rank])].copy()
    if rank == 1:
        X[3, 0] = np.nan
    try:
        hr.solve(X, Y[slice(*row_ranges(len(Y), world)[rank])], distributed=True, progress=False)
        error = ""
    except (ValueError, RuntimeError) as err:
        error = f"{type(err).__name__}: {err}"
    np.savez(out / f"nan_rank{rank}.npz", error=np.array(error))
    import torch.distributed as dist

    dist.destroy_process_group()  # left open, gloo's threads can abort the process at exit


def _rank() -> tuple[int, int]:
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


def _solve(X: np.ndarray, Y: np.ndarray, options: dict) -> hr.Matching:
    import torch.distributed as dist

    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (-1, -1)
    if rank < 0:  # first call: let hiref start the process group from torchrun's variables
        import os

        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    rows_x, rows_y = row_ranges(len(X), world)[rank], row_ranges(len(Y), world)[rank]
    return hr.solve(X[slice(*rows_x)], Y[slice(*rows_y)], distributed=True, progress=False, seed=0, **options)


def _save(out: Path, name: str, m: hr.Matching) -> None:
    rank, _ = _rank()
    np.savez(
        out / f"{name}_rank{rank}.npz",
        perm=m.perm,
        cost=m.cost,
        level_costs=np.array(m.level_costs),
        labels_x=np.stack(m.labels_x),
        labels_y=np.stack(m.labels_y),
        world=m.world_size,
        sent=sum(m.communication.values()),
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
