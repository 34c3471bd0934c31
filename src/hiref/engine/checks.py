"""Argument checks of the engine, shared by the AnnData layer and the command line.

Every message names the argument, what was expected and what came.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from hiref.engine._types import ArrayLike

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Return ``device`` as a :class:`torch.device`; ``None`` means cuda when available, else cpu."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        msg = f"`device` must be None, 'cpu', 'cuda' or 'cuda:N', got {device!r}."
        raise ValueError(msg) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        msg = f"`device` is {device!r} but torch sees no CUDA device; pass device='cpu' or None."
        raise ValueError(msg)
    return dev


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """Return the working float type; ``None`` means float32."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    if dtype in (torch.float32, torch.float64):
        return dtype
    if dtype in (np.float32, np.float64):
        return _DTYPES[np.dtype(dtype).name]
    msg = f"`dtype` must be None, 'float32' or 'float64', got {dtype!r}."
    raise ValueError(msg)


def as_points(points: ArrayLike, name: str) -> torch.Tensor:
    """Check one point cloud and return it as a CPU or device tensor, keeping its values.

    Parameters
    ----------
    points
        Array of shape ``(n, d)``.
    name
        Argument name used in error messages.
    """
    if isinstance(points, np.ndarray):
        if not (np.issubdtype(points.dtype, np.floating) or np.issubdtype(points.dtype, np.integer)):
            msg = f"`{name}` must hold real numbers, got a numpy array of dtype {points.dtype}."
            raise TypeError(msg)
        tensor = torch.from_numpy(np.ascontiguousarray(points))
    elif isinstance(points, torch.Tensor):
        if points.is_complex() or points.dtype == torch.bool:
            msg = f"`{name}` must hold real numbers, got a tensor of dtype {points.dtype}."
            raise TypeError(msg)
        tensor = points.detach()
    else:
        msg = f"`{name}` must be a numpy array or a torch tensor of shape (n, d), got {type(points).__name__}."
        raise TypeError(msg)
    if tensor.ndim != 2:
        msg = f"`{name}` must be 2-D (n points x d features), got shape {tuple(tensor.shape)}."
        raise ValueError(msg)
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        msg = f"`{name}` is empty: shape {tuple(tensor.shape)}; it needs at least one point and one feature."
        raise ValueError(msg)
    if tensor.is_floating_point():
        bad = ~torch.isfinite(tensor)
        if bool(bad.any()):
            rows = torch.nonzero(bad.any(1)).flatten()
            msg = (
                f"`{name}` contains NaN or infinite values in {rows.numel()} row(s) "
                f"(first: {rows[:5].tolist()}); remove or impute them first."
            )
            raise ValueError(msg)
    return tensor


def check_features(X: torch.Tensor, Y: torch.Tensor) -> None:
    """Check that two clouds live in the same space."""
    if X.shape[1] != Y.shape[1]:
        msg = f"`X` and `Y` must have the same number of features (columns), got {X.shape[1]} and {Y.shape[1]}."
        raise ValueError(msg)


def check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` after checking it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        msg = f"`{name}` must be one of {list(choices)}, got {value!r}."
        raise ValueError(msg)
    return value


def check_positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int after checking it is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        msg = f"`{name}` must be an int, got {type(value).__name__}."
        raise TypeError(msg)
    if value < minimum:
        msg = f"`{name}` must be at least {minimum}, got {value}."
        raise ValueError(msg)
    return int(value)


def check_positive_float(value: object, name: str) -> float:
    """Return ``value`` as a float after checking it is a finite number ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        msg = f"`{name}` must be a number, got {type(value).__name__}."
        raise TypeError(msg)
    if not np.isfinite(value) or value <= 0:
        msg = f"`{name}` must be a finite number > 0, got {value}."
        raise ValueError(msg)
    return float(value)


#: Seeds are integers in ``[0, SEED_LIMIT)``: what torch, numpy and scikit-learn (scanpy's PCA) all accept.
SEED_LIMIT = 2**32


def check_seed(value: object, name: str = "seed") -> int:
    """Return ``value`` as a seed: an int in ``[0, 2**32)``.

    Accepts Python and numpy integers, ``None`` (fresh entropy from the operating system; the
    drawn seed is returned so that the caller can record it) and a
    :class:`numpy.random.Generator` (one integer is drawn from it).
    """
    if value is None:
        return int(np.random.SeedSequence().entropy % SEED_LIMIT)
    if isinstance(value, np.random.Generator):
        return int(value.integers(SEED_LIMIT))
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        msg = (
            f"`{name}` must be an int in [0, 2**32), None (a fresh random seed) or a numpy.random.Generator, "
            f"got {type(value).__name__} {value!r}."
        )
        raise TypeError(msg)
    if not 0 <= int(value) < SEED_LIMIT:
        msg = f"`{name}` must be an int in [0, 2**32) (0 to {SEED_LIMIT - 1}), got {value}."
        raise ValueError(msg)
    return int(value)


def check_bool(value: object, name: str) -> bool:
    """Return ``value`` after checking it is a bool (Python or numpy), not a truthy string or number."""
    if not isinstance(value, bool | np.bool_):
        msg = f"`{name}` must be True or False, got {type(value).__name__} {value!r}."
        raise TypeError(msg)
    return bool(value)
