"""Type aliases shared by the engine."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import torch

#: What the engine accepts as a point cloud: a numpy array or a torch tensor of shape (n, d).
ArrayLike: TypeAlias = np.ndarray | torch.Tensor
