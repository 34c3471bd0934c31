"""Peak-memory readings for the engine's per-level report."""

from __future__ import annotations

import sys

import torch

try:
    import resource
except ImportError:  # Windows
    resource = None


def peak_rss_bytes() -> int | None:
    """Peak resident memory of this process so far, in bytes (None where the OS cannot tell)."""
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def peak_device_bytes(device: torch.device) -> int | None:
    """Peak memory allocated by torch on a CUDA device so far, in bytes (None on CPU)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))


def record_memory(memory: dict[str, int], stage: str, device: torch.device) -> None:
    """Store the peak resident (and CUDA) memory so far under ``rss_<stage>`` (``cuda_<stage>``)."""
    rss = peak_rss_bytes()
    if rss is not None:
        memory[f"rss_{stage}"] = rss
    gpu = peak_device_bytes(device)
    if gpu is not None:
        memory[f"cuda_{stage}"] = gpu
