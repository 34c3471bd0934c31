"""Fingerprints of the engine's output on fixed configurations, to check that a change keeps behaviour.

Every configuration is solved with a fixed seed; its fingerprint is a SHA-256 of ``perm``, of
the co-cluster labels of every level (both sides), of the exact reported costs (``cost``,
``level_costs``, ``refine_costs``, as float64 bytes) and of the schedule. Run it before and after a
change that must not alter results (a refactoring), and compare::

    python benchmarks/fingerprint.py --json /tmp/before.json          # on the old tree
    python benchmarks/fingerprint.py --compare /tmp/before.json       # on the new tree

``--compare`` exits with status 1 if any fingerprint differs. The distributed configuration
launches two gloo processes with ``torchrun`` (skipped with ``--no-distributed``). Fingerprints
depend on the machine's floating-point libraries: compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import hiref as hr


def configurations() -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """The inputs and options of every configuration."""
    X, Y = hr.datasets.halfmoon_scurve(4096, seed=1)
    Xs, Ys = hr.datasets.halfmoon_scurve(3000, seed=2)
    extra = hr.datasets.halfmoon_scurve(700, seed=3)[0]
    rng = np.random.default_rng(0)
    G = rng.normal(size=(2500, 30))
    H = rng.normal(size=(2500, 30)) + 0.5 * np.sign(rng.normal(size=(2500, 1)))
    return {
        "2d": (X, Y, {}),
        "2d_hierarchy_only": (X, Y, {"polish": False, "refine": False}),
        "30d_sketch": (G, H, {"sketch_dim": 12}),
        "30d_default": (G, H, {}),
        "n_ne_m": (np.concatenate([Xs, extra]), Ys, {}),
        "n_ne_m_subsample": (Xs, np.concatenate([Ys, extra]), {"unbalanced": "subsample"}),
        "rank3": (Xs, Ys, {"schedule": [3, 3, 2], "leaf_size": 256, "coarse_size": 512}),
        "refine": (Xs, Ys, {"refine": True, "polish": False}),
        "euclidean": (Xs[:1500], Ys[:1500], {"cost": "euclidean"}),
    }


def fingerprint(m: hr.Matching) -> str:
    """SHA-256 of everything a matching reports that must not change."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(m.perm, dtype=np.int64).tobytes())
    for labels in (m.labels_x, m.labels_y):
        for level in labels:
            h.update(np.ascontiguousarray(level, dtype=np.int64).tobytes())
    costs = [m.cost, *m.level_costs, *m.refine_costs]
    h.update(np.asarray(costs, dtype=np.float64).tobytes())
    h.update(np.asarray(m.schedule, dtype=np.int64).tobytes())
    return h.hexdigest()


def _distributed(world: int = 2) -> str:
    """Fingerprint of a ``world``-process gloo run of the 2-D configuration."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "perm.npz"
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
            __file__, "--worker", str(out),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        with np.load(out) as f:
            return str(f["fingerprint"])


def _worker(out: Path) -> None:
    import torch
    import torch.distributed as dist

    from hiref.engine import row_ranges

    torch.set_num_threads(1)
    X, Y = configurations()["2d"][:2]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    xs, ys = row_ranges(len(X), world)[rank], row_ranges(len(Y), world)[rank]
    m = hr.solve(X[slice(*xs)], Y[slice(*ys)], distributed=True, progress=False)
    if rank == 0:
        np.savez(out, fingerprint=np.array(fingerprint(m)))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write the fingerprints here")
    parser.add_argument("--compare", type=Path, help="compare with fingerprints written earlier")
    parser.add_argument("--no-distributed", action="store_true", help="skip the 2-process gloo run")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        _worker(args.worker)
        return
    prints = {}
    for name, (X, Y, options) in configurations().items():
        prints[name] = fingerprint(hr.solve(X, Y, seed=7, progress=False, **options))
        print(f"{name:20s} {prints[name][:16]}", flush=True)
    if not args.no_distributed:
        prints["distributed_2_gloo"] = _distributed()
        print(f"{'distributed_2_gloo':20s} {prints['distributed_2_gloo'][:16]}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(prints, indent=1) + "\n")
    if args.compare is not None:
        old = json.loads(args.compare.read_text())
        differ = [k for k in old if k in prints and old[k] != prints[k]]
        skipped = sorted(set(old) - set(prints))
        print(("identical" if not differ else f"DIFFERENT: {differ}") + (f" (not run: {skipped})" if skipped else ""))
        sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
