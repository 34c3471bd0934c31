"""Series benchmark: ``hr.tl.trace`` at scale, and ``hr.tl.stack`` on real serial sections.

Two parts:

- ``trace``: ``--sections`` (10) synthetic sections of ``--cells`` (10^6) cells each, with a
  random permutation between consecutive ones stored by ``hr.tl.store_matching`` under the
  keys ``hr.tl.align_series`` uses (no solving; ``--unmatched`` leaves that share of every
  pair unmatched, so that chains break). Times ``hr.tl.trace`` from the first section to all
  the others, writing its ``.obs`` columns and returning the tidy table (``inplace=True``) and
  returning the table only (``inplace=False``), each ``--repeats`` times (median), and measures
  the peak memory of one call: the resident memory it adds (``peak_rss_extra_gb``: the
  high-water mark, reset before the call through ``/proc/self/clear_refs``, minus the resident
  memory before it; NaN where that is not possible) and tracemalloc's peak of the memory it
  allocates (``peak_alloc_gb``, numpy buffers included). Checks the result
  against the permutations composed by hand.
- ``stack``: the four PASTE breast-cancer sections of ``../shared/data`` (or
  ``$HIREF_SHARED_DATA``): joint PCA (30 PCs of 2,000 variable genes), ``hr.tl.align_series`` on
  expression alone, ``hr.tl.trace`` from the first section, ``hr.tl.stack``; for every
  consecutive pair of sections, the median distance between the partners there of every traced
  cell (both matched), in the raw coordinates and in the stacked common frame.

Examples
--------
    python benchmarks/series.py --json benchmarks/results/series_cpu.json
    python benchmarks/series.py --cells 100000 --skip-stack
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

import hiref as hr

from _common import print_table, reset_peak, rss_gb, write_json


def synthetic_series(n_sections: int, n_cells: int, unmatched: float, seed: int = 0) -> tuple[list, list]:
    """Sections with random partial permutations stored as align_series stores them."""
    rng = np.random.default_rng(seed)
    sections = [
        ad.AnnData(obs=pd.DataFrame(index=pd.Index([f"s{s}_{i}" for i in range(n_cells)], dtype=object)))
        for s in range(n_sections)
    ]
    perms = []
    for i in range(n_sections - 1):
        perm = rng.permutation(n_cells)
        perm[rng.random(n_cells) < unmatched] = -1
        hr.tl.store_matching(sections[i], sections[i + 1], perm, key_added=f"hiref_{i}_{i + 1}", spatial_key=None)
        perms.append(perm)
    return sections, perms


def run_trace(n_sections: int, n_cells: int, unmatched: float, repeats: int) -> list[dict]:
    t0 = time.perf_counter()
    sections, perms = synthetic_series(n_sections, n_cells, unmatched)
    setup = time.perf_counter() - t0
    expected = np.arange(n_cells)
    for perm in perms:
        expected = np.where(expected >= 0, perm[np.maximum(expected, 0)], -1)
    rows = []
    for inplace in (True, False):
        times = []
        for _ in range(repeats):
            gc.collect()
            t0 = time.perf_counter()
            table = hr.tl.trace(sections, inplace=inplace)
            times.append(time.perf_counter() - t0)
            last = table["partner_index"].to_numpy()[-n_cells:]
            assert np.array_equal(last, expected), "trace disagrees with the permutations composed by hand"
            del table
        gc.collect()
        before = rss_gb("VmRSS")
        rss_peak = float("nan")
        if reset_peak():
            table = hr.tl.trace(sections, inplace=inplace)
            rss_peak = rss_gb("VmHWM") - before
            del table
            gc.collect()
        tracemalloc.start()
        table = hr.tl.trace(sections, inplace=inplace)
        traced_peak = tracemalloc.get_traced_memory()[1] / 1e9
        tracemalloc.stop()
        rows.append({
            "sections": n_sections, "cells": n_cells, "unmatched_per_pair": unmatched,
            "inplace": inplace, "seconds": float(np.median(times)), "seconds_max": max(times),
            "peak_rss_extra_gb": rss_peak, "peak_alloc_gb": traced_peak, "table_rows": len(table),
            "table_gb": float(table.memory_usage(deep=False).sum() / 1e9),
            "still_matched_at_last": float((last >= 0).mean()), "setup_s": setup,
        })  # fmt: skip
        del table
    return rows


def _data_dir() -> Path:
    root = Path(__file__).resolve().parents[1]
    for c in (os.environ.get("HIREF_SHARED_DATA"), root.parent / "shared" / "data"):
        if c and Path(c, "paste_breast_slice1.h5ad").exists():
            return Path(c)
    msg = "PASTE sections not found: put them in ../shared/data or set HIREF_SHARED_DATA"
    raise SystemExit(msg)


def run_stack(spacing: float) -> list[dict]:
    import scanpy as sc

    names = [f"slice {i}" for i in range(1, 5)]
    parts = [ad.read_h5ad(_data_dir() / f"paste_breast_slice{i}.h5ad") for i in range(1, 5)]
    joint = ad.concat(parts, join="inner", label="section", keys=names, index_unique="-")
    sc.pp.normalize_total(joint, target_sum=1e4)
    sc.pp.log1p(joint)
    sc.pp.highly_variable_genes(joint, n_top_genes=2000)
    sc.pp.pca(joint, n_comps=30, mask_var="highly_variable", random_state=0)
    sections = [joint[(joint.obs["section"] == s).to_numpy()].copy() for s in names]
    t0 = time.perf_counter()
    keys = hr.tl.align_series(sections, use_rep="X_pca", progress=False)
    align_s = time.perf_counter() - t0
    table = hr.tl.trace(sections, keys=keys)
    t0 = time.perf_counter()
    motions = hr.tl.stack(sections, spacing=spacing)
    stack_s = time.perf_counter() - t0
    n = sections[0].n_obs
    partner = {0: np.arange(n)} | {
        j: table.loc[table["section"] == j, "partner_index"].to_numpy() for j in range(1, len(sections))
    }
    rows = []
    for j in range(len(sections) - 1):
        both = (partner[j] >= 0) & (partner[j + 1] >= 0)
        row = {"pair": f"{names[j]} -> {names[j + 1]}", "traced_cells": int(both.sum())}
        for label, basis in (("raw", "spatial"), ("stacked", "spatial_3d")):
            A = np.asarray(sections[j].obsm[basis])[partner[j][both], :2]
            B = np.asarray(sections[j + 1].obsm[basis])[partner[j + 1][both], :2]
            row[f"median_{label}"] = float(np.median(np.linalg.norm(A - B, axis=1)))
        R = motions[j + 1]["rotation"]
        row["rotation_deg"] = float(np.degrees(np.arctan2(R[1, 0], R[0, 0])))
        row["align_s"], row["stack_s"] = align_s, stack_s
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", type=int, default=10)
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--unmatched", type=float, default=0.01, help="share of each pair left unmatched")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spacing", type=float, default=1.0, help="z spacing of the stack (spot-grid units)")
    parser.add_argument("--skip-trace", action="store_true")
    parser.add_argument("--skip-stack", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    payload: dict = {}
    if not args.skip_trace:
        rows = run_trace(args.sections, args.cells, args.unmatched, args.repeats)
        columns = ["sections", "cells", "inplace", "seconds", "seconds_max", "peak_rss_extra_gb", "peak_alloc_gb"]
        columns += ["table_rows", "table_gb", "still_matched_at_last", "setup_s"]
        print_table(rows, columns, "hr.tl.trace from the first section to all others")
        payload["trace"] = rows
    if not args.skip_stack:
        rows = run_stack(args.spacing)
        columns = ["pair", "traced_cells", "median_raw", "median_stacked", "rotation_deg", "align_s", "stack_s"]
        print_table(rows, columns, "PASTE breast sections: median distance of traced partners (spot-grid units)")
        payload["stack"] = rows
    if args.json:
        write_json(args.json, payload)


if __name__ == "__main__":
    main()
