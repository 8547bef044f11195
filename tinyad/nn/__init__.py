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

__all__ = [
    "Module",
    "Linear",
    "BatchNorm1d",
    "BatchNorm2d",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "Flatten",
    "Sequential",
    "set_population_statistics",
    "functional",
    "init",
]
