"""Random initialization for layers, from one seedable generator.

``manual_seed(n)`` makes every later layer initialization reproducible, as
``torch.manual_seed`` does for PyTorch.
"""
from __future__ import annotations

import numpy as np

__all__ = ["manual_seed", "uniform", "generator"]

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Restart the initialization generator from ``seed``."""
    global _generator
    _generator = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The generator layers draw their initial weights from."""
    return _generator


def uniform(shape: tuple, bound: float) -> np.ndarray:
    """Samples from U(-bound, bound), float64."""
    return _generator.uniform(-bound, bound, size=shape)
