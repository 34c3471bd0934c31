"""Helpers shared by the benchmark scripts: machine description, tables, JSON output, resident memory."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch


def machine() -> dict[str, str | int]:
    """What the numbers were measured on."""
    info: dict[str, str | int] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def print_table(rows: list[dict], columns: list[str], title: str) -> None:
    """Print ``rows`` as a fixed-width table."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def write_json(path: str | Path, payload: dict) -> None:
    """Write ``payload`` (plus the machine description) to ``path`` as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=_default))
    print(f"\nwrote {path}")


def _default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


def rss_gb(field: str = "VmRSS") -> float:
    """This process's resident memory in GB: ``VmRSS`` (now) or ``VmHWM`` (peak) from Linux's
    ``/proc/self/status``; elsewhere the lifetime peak (``ru_maxrss``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def reset_peak() -> bool:
    """Reset this process's peak resident memory (``VmHWM``) to the current one; False where Linux does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def max_and_median(rows: list[dict], group_by: tuple[str, ...], keys: tuple[str, ...]) -> list[tuple[list[dict], dict]]:
    """Rows grouped by ``group_by``; per group its rows and a summary: ``seeds``, ``<key>_max`` and ``<key>_median``.

    ``None`` values are left out (a key with none at all gives ``None``).
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[g] for g in group_by), []).append(r)
    out = []
    for values, rs in groups.items():
        row = {**dict(zip(group_by, values, strict=True)), "seeds": len(rs)}
        for key in keys:
            vals = [r[key] for r in rs if r.get(key) is not None]
            row[f"{key}_max"] = max(vals) if vals else None
            row[f"{key}_median"] = float(np.median(vals)) if vals else None
        out.append((rs, row))
    return out
