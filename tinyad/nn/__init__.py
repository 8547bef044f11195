"""Layers (``tinyad.nn``) and functions (``tinyad.nn.functional``) built on Tensors."""
from . import functional, init
from .modules import (
    BatchNorm1d,
    BatchNorm2d,
    Flatten,
    Linear,
    Module,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    set_population_statistics,
)

from . import modules

__all__ = [*modules.__all__, "functional", "init"]
