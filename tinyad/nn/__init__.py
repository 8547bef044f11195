"""Layers (``tinyad.nn``) and functions (``tinyad.nn.functional``) built on Tensors.

The layers have PyTorch's names, shapes, defaults and initialization, with one
difference: their parameters are float64 unless a layer is given
``dtype="float32"`` (PyTorch's default is float32; float64 is what
finite-difference checks need). ``tinyad.nn.init`` holds the generator the
initial weights are drawn from.
"""
from . import functional, init
from .modules import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    CrossEntropyLoss,
    Dropout,
    Flatten,
    LayerNorm,
    Linear,
    MaxPool2d,
    Module,
    Parameter,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    set_population_statistics,
)

from . import modules

__all__ = [*modules.__all__, "functional", "init"]
