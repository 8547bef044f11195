"""Random numbers for layers, dropout and ``tinyad.randn``, from one seedable generator.

``manual_seed(n)`` makes every later layer initialization, dropout mask and
``randn``/``rand``/``randint`` draw reproducible, as ``torch.manual_seed``
does for PyTorch. Code that keeps its own stream passes a ``Generator``
(``generator=g``), as PyTorch's does; the numbers are NumPy's, not torch's.
"""
from __future__ import annotations

import numpy as np

__all__ = ["manual_seed", "uniform", "generator", "Generator"]

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


class Generator:
    """A random stream of its own: ``g = Generator().manual_seed(2147483647)``,
    then ``tinyad.randn(3, generator=g)`` (PyTorch's spelling, NumPy's numbers)."""

    def __init__(self) -> None:
        self.numpy_generator = np.random.default_rng()

    def manual_seed(self, seed: int) -> "Generator":
        """Restart this stream from ``seed``; returns the generator, as PyTorch's does."""
        self.numpy_generator = np.random.default_rng(seed)
        return self


def numpy_generator(generator: "Generator | None" = None) -> np.random.Generator:
    """The NumPy generator behind ``generator``, or the shared one that ``manual_seed`` restarts."""
    return _generator if generator is None else generator.numpy_generator
