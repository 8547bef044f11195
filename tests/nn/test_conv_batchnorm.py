"""BatchNorm2d after Conv2d, the paper's convolutional setting, against torch in train
and eval mode, float64 and float32 (issue 17, point 5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import tinyad
from tinyad import Tensor, nn

from nn_oracle import assert_runs_match, assert_same_buffers, randomize_affine, run_both, tolerance, torch_twin

RNG = np.random.default_rng(11)


def conv_bn_block(dtype: str, momentum: float | None = 0.1) -> nn.Module:
    tinyad.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, dtype=dtype), nn.BatchNorm2d(6, momentum=momentum, dtype=dtype),
                         nn.ReLU(), nn.MaxPool2d(2))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_conv_then_batchnorm2d_matches_torch_over_training_steps_and_in_eval(dtype, momentum):
    model = conv_bn_block(dtype, momentum)
    randomize_affine(model, RNG)
    for layer in model.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.weight.data, layer.bias.data = layer.weight.data.astype(dtype), layer.bias.data.astype(dtype)
    twin = torch_twin(model, getattr(torch, dtype))
    tol = tolerance(dtype)
    for step in range(3):
        x = (RNG.normal(size=(4, 3, 8, 8)) * 2 + 1).astype(dtype)
        dy = RNG.normal(size=(4, 6, 4, 4)).astype(dtype)
        assert_runs_match(run_both(model, twin, x, dy), **tol, what=f"train step {step}")
        assert_same_buffers(model, twin, **tol, what=f"train step {step}")
    model.eval(), twin.eval()
    x = RNG.normal(size=(2, 3, 8, 8)).astype(dtype)
    assert_runs_match(run_both(model, twin, x, RNG.normal(size=(2, 6, 4, 4)).astype(dtype)), **tol, what="eval")
    assert_same_buffers(model, twin, **tol, what="eval")


def test_batchnorm2d_statistics_are_per_channel_over_batch_and_space():
    conv, bn = nn.Conv2d(3, 5, 3, dtype="float64"), nn.BatchNorm2d(5)
    features = conv(Tensor(RNG.normal(size=(4, 3, 9, 9)) * 3 + 2))
    y = bn(features).numpy()
    # one mean and one variance per channel, shared by every example and every position
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-4)
    m = 4 * 7 * 7
    expected = 0.9 + 0.1 * features.numpy().var(axis=(0, 2, 3)) * m / (m - 1)
    np.testing.assert_allclose(bn.running_var.numpy(), expected, rtol=1e-12)


def test_batchnorm2d_in_eval_treats_each_example_alone():
    block = conv_bn_block("float64")
    block(Tensor(RNG.normal(size=(8, 3, 8, 8))))  # one training step fills the running statistics
    block.eval()
    batch = RNG.normal(size=(3, 3, 8, 8))
    together = block(Tensor(batch)).numpy()
    alone = block(Tensor(batch[:1])).numpy()
    np.testing.assert_allclose(together[:1], alone, rtol=1e-12)
