"""Shared helpers for the nn / BatchNorm / optimizer tests: PyTorch as the oracle.

tinyad's modules use PyTorch's parameter and buffer names ("weight", "bias",
"running_mean", "running_var", "num_batches_tracked", "0.weight", ...), so a
tinyad ``state_dict()`` (plain NumPy arrays) loads straight into the
equivalent torch module. The helpers here build that torch twin, copy state
across, and compare arrays with tolerances scaled to the magnitude of the
expected values (gradients of BatchNorm inputs sum to zero per channel, so
some entries are tiny differences of large numbers).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

import tinyad
from tinyad import Tensor, nn

# --------------------------------------------------------------------------
# conversions
# --------------------------------------------------------------------------


def as_numpy(value: Any) -> np.ndarray:
    """A tinyad Tensor, a torch tensor, or an array-like as a NumPy array."""
    if isinstance(value, Tensor):
        return value.numpy()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def torch_leaf(array: np.ndarray, requires_grad: bool = True) -> torch.Tensor:
    """A torch leaf holding a copy of ``array`` (same dtype)."""
    return torch.tensor(np.array(array, copy=True), requires_grad=requires_grad)


def tinyad_leaf(array: np.ndarray, requires_grad: bool = True, label: str = "") -> Tensor:
    """A tinyad leaf holding a copy of ``array`` (same dtype)."""
    return Tensor(np.array(array, copy=True), requires_grad=requires_grad, label=label)


# --------------------------------------------------------------------------
# comparisons
# --------------------------------------------------------------------------


def assert_close(actual: Any, expected: Any, rtol: float = 1e-10, atol: float = 1e-12, what: str = "") -> None:
    """``actual`` equals ``expected`` elementwise within ``rtol`` and an absolute
    tolerance of ``atol * max(1, max|expected|)``; shapes must agree exactly."""
    a, e = as_numpy(actual), as_numpy(expected)
    assert a.shape == e.shape, f"{what}: shapes differ, actual {a.shape}, expected {e.shape}"
    scale = max(1.0, float(np.abs(e).max())) if e.size else 1.0
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol * scale, err_msg=what)


# tolerances per dtype for tinyad-vs-torch comparisons
TOLERANCES = {
    np.float64: dict(rtol=1e-10, atol=1e-12),
    np.float32: dict(rtol=1e-5, atol=1e-5),
}


def tolerance(dtype: Any) -> dict:
    return TOLERANCES[np.dtype(dtype).type]


# --------------------------------------------------------------------------
# modules: torch twins with the same state
# --------------------------------------------------------------------------


def load_into_torch(module: nn.Module, torch_module: torch.nn.Module) -> torch.nn.Module:
    """Copy every parameter and buffer of a tinyad module into ``torch_module`` (strict)."""
    state = {name: torch.from_numpy(np.array(array, copy=True)) for name, array in module.state_dict().items()}
    torch_module.load_state_dict(state, strict=True)
    return torch_module


def torch_twin(module: nn.Module, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    """The torch equivalent of a tinyad module (Linear, Conv2d, pooling, BatchNorm*,
    LayerNorm, activations, Flatten, Sequential of those), with the same
    parameters, buffers and mode."""
    if isinstance(module, nn.Sequential):
        twin = torch.nn.Sequential(*[torch_twin(child, dtype) for child in module._modules.values()])
    elif isinstance(module, nn.Linear):
        twin = torch.nn.Linear(module.in_features, module.out_features, bias=module.bias is not None, dtype=dtype)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        cls = torch.nn.BatchNorm1d if isinstance(module, nn.BatchNorm1d) else torch.nn.BatchNorm2d
        twin = cls(
            module.num_features,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
            dtype=dtype,
        )
    elif isinstance(module, nn.Conv2d):
        twin = torch.nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
                               padding=module.padding, dilation=module.dilation, bias=module.bias is not None,
                               dtype=dtype)
    elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        cls = torch.nn.AvgPool2d if isinstance(module, nn.AvgPool2d) else torch.nn.MaxPool2d
        twin = cls(module.kernel_size, stride=module.stride, padding=module.padding)
    elif isinstance(module, nn.LayerNorm):
        twin = torch.nn.LayerNorm(module.normalized_shape, eps=module.eps, elementwise_affine=module.elementwise_affine,
                                  bias=module.bias is not None, dtype=dtype)
    elif isinstance(module, nn.ReLU):
        twin = torch.nn.ReLU()
    elif isinstance(module, nn.Sigmoid):
        twin = torch.nn.Sigmoid()
    elif isinstance(module, nn.Tanh):
        twin = torch.nn.Tanh()
    elif isinstance(module, nn.Flatten):
        twin = torch.nn.Flatten(start_dim=module.start_dim)
    else:  # pragma: no cover - only used with the layers above
        raise TypeError(f"no torch twin for {type(module).__name__}")
    if not isinstance(module, nn.Sequential):
        load_into_torch(module, twin)
    twin.train(module.training)
    return twin


def randomize_affine(module: nn.Module, rng: np.random.Generator) -> None:
    """Give every BatchNorm layer non-trivial gamma and beta (defaults are 1 and 0)."""
    for layer in module.modules():
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)) and layer.affine:
            layer.weight.data = rng.uniform(0.5, 2.0, size=layer.num_features) * rng.choice([-1.0, 1.0], size=layer.num_features)
            layer.bias.data = rng.normal(size=layer.num_features)


def assert_same_buffers(module: nn.Module, twin: torch.nn.Module, rtol: float = 1e-10, atol: float = 1e-12, what: str = "") -> None:
    """running_mean, running_var and num_batches_tracked agree between tinyad and torch."""
    ours = dict(module.named_buffers())
    theirs = dict(twin.named_buffers())
    assert set(ours) == set(theirs), f"{what}: buffers {sorted(ours)} vs torch {sorted(theirs)}"
    for name, buffer in ours.items():
        if name.endswith("num_batches_tracked"):
            assert int(buffer.numpy()) == int(theirs[name].item()), f"{what}: {name}"
        else:
            assert_close(buffer, theirs[name], rtol=rtol, atol=atol, what=f"{what}: {name}")


def run_both(module: nn.Module, twin: torch.nn.Module, x: np.ndarray, dy: np.ndarray) -> dict:
    """Forward ``x`` through both, backpropagate L = sum(y * dy), return outputs and grads.

    Parameter gradients of both are reset first, so each call is one step.
    """
    module.zero_grad()
    twin.zero_grad(set_to_none=True)
    x_ours = tinyad_leaf(x)
    y_ours = module(x_ours)
    (y_ours * Tensor(dy)).sum().backward()
    x_theirs = torch_leaf(x)
    y_theirs = twin(x_theirs)
    (y_theirs * torch.from_numpy(np.array(dy, copy=True))).sum().backward()
    return {
        "y": (y_ours, y_theirs),
        "x.grad": (x_ours.grad, x_theirs.grad),
        **{
            f"{name}.grad": (param.grad, dict(twin.named_parameters())[name].grad)
            for name, param in module.named_parameters()
        },
    }


def assert_runs_match(results: dict, rtol: float = 1e-10, atol: float = 1e-12, what: str = "") -> None:
    for key, (ours, theirs) in results.items():
        assert ours is not None and theirs is not None, f"{what}: {key} is missing (ours {ours is None}, torch {theirs is None})"
        assert_close(ours, theirs, rtol=rtol, atol=atol, what=f"{what}: {key}")


def numpy_batch_norm_train(x: np.ndarray, gamma: Any = None, beta: Any = None, eps: float = 1e-5) -> np.ndarray:
    """Training-mode BatchNorm written directly in NumPy (biased variance, eps inside the root)."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = [1] * x.ndim
    shape[1] = x.shape[1]
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if gamma is not None:
        y = y * np.reshape(gamma, shape)
    if beta is not None:
        y = y + np.reshape(beta, shape)
    return y


__all__ = [
    "as_numpy",
    "torch_leaf",
    "tinyad_leaf",
    "assert_close",
    "tolerance",
    "load_into_torch",
    "torch_twin",
    "randomize_affine",
    "assert_same_buffers",
    "run_both",
    "assert_runs_match",
    "numpy_batch_norm_train",
    "tinyad",
]
