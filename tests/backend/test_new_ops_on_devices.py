"""The ops of issue 17 do their array work through ``backend.xp``: on the "spy" device
(tests/conftest.py) they stay on it, copy nothing to the host, and match the CPU; on
"cuda" (skipped without CuPy and a GPU) they match the CPU too."""
from __future__ import annotations

import numpy as np
import pytest

import tinyad
from tinyad.nn import functional as F

from device_cases import assert_same_as_cpu, assert_stays_on_the_spy_and_matches_the_cpu, fixed, positive

NEW_OPS = {
    "sum dim keepdim": (lambda a: a.sum(1, keepdim=True), [fixed((2, 3))]),
    "var unbiased=False": (lambda a: a.var(0, unbiased=False), [fixed((4, 3))]),
    "std": (lambda a: a.std(dim=1), [fixed((4, 3))]),
    "std of equal values": (lambda a: (a * 0).std(dim=1) + a.sum(1), [fixed((4, 3))]),
    "amax": (lambda a: a.amax(dim=(0, 1)), [fixed((2, 3, 2))]),
    "max dim values": (lambda a: a.max(1).values, [fixed((3, 4))]),
    "min dim keepdim values": (lambda a: a.min(0, keepdim=True).values, [fixed((3, 4))]),
    "flatten, unsqueeze, squeeze": (lambda a: a.flatten().unsqueeze(0).squeeze(0), [fixed((2, 3))]),
    "expand": (lambda a: a.expand(4, 2, 3) * 2, [fixed((2, 3))]),
    "clone": (lambda a: a.clone() * a, [fixed((2, 3))]),
    "float / double": (lambda a: a.float().double() * 2, [fixed((2, 3))]),
    "cat": (lambda a, b: tinyad.cat([a, b], dim=1), [fixed((2, 3)), fixed((2, 1), seed=1)]),
    "softmax": (lambda z: F.softmax(z, 1), [fixed((4, 3), -5, 5)]),
    "log_softmax": (lambda z: F.log_softmax(z, 0), [fixed((4, 3), -5, 5)]),
    "cross_entropy smoothed, sum": (
        lambda z: F.cross_entropy(z, np.array([0, 2, 1, 2]), reduction="sum", label_smoothing=0.1).reshape(1),
        [fixed((4, 3), -5, 5)],
    ),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, 3, w, b), [fixed((4, 3)), positive((3,), 1), fixed((3,), seed=2)]),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
               [fixed((2, 3, 5, 5)), fixed((4, 3, 3, 3), seed=1), fixed((4,), seed=2)]),
    "unfold": (lambda x: F.unfold(x, 2, padding=1), [fixed((1, 2, 3, 3))]),
    "max_pool2d (padding)": (lambda x: F.max_pool2d(x, 3, 2, 1), [fixed((2, 2, 5, 5))]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 2), [fixed((2, 2, 4, 4))]),
}


@pytest.mark.parametrize("name", list(NEW_OPS))
def test_new_op_on_the_spy_backend_stays_on_it_and_matches_the_cpu(spy_device, name):
    fn, arrays = NEW_OPS[name]
    assert_stays_on_the_spy_and_matches_the_cpu(spy_device, fn, arrays, name)


@pytest.mark.parametrize("name", list(NEW_OPS))
def test_new_op_matches_the_cpu_on_every_device(backend_device, name):
    fn, arrays = NEW_OPS[name]
    assert_same_as_cpu(backend_device, fn, arrays)
