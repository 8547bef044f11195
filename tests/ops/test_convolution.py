"""unfold (im2col), conv2d and pooling against torch, forward and backward, float64 and
float32; unfold's hand-written backward also against finite differences (issue 17, point 4)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyad
from tinyad import Tensor, nn
from tinyad.check import gradcheck
from tinyad.nn import functional as F

from nn_oracle import assert_runs_match, run_both, tolerance, torch_twin
from tensor_oracle import assert_matches_torch

DTYPES = [np.float64, np.float32]
RNG = np.random.default_rng(4)
IMAGES = RNG.normal(size=(2, 3, 7, 8))

GEOMETRIES = {  # kernel, stride, padding, dilation
    "3x3": dict(kernel=3, stride=1, padding=0, dilation=1),
    "3x3 stride 2 pad 1": dict(kernel=3, stride=2, padding=1, dilation=1),
    "2x4 pad (1, 2)": dict(kernel=(2, 4), stride=1, padding=(1, 2), dilation=1),
    "3x3 dilation 2": dict(kernel=3, stride=1, padding=0, dilation=2),
    "1x1": dict(kernel=1, stride=(2, 3), padding=0, dilation=1),
    "whole image": dict(kernel=(7, 8), stride=1, padding=0, dilation=1),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_unfold_matches_torch(name, dtype):
    g = GEOMETRIES[name]
    assert_matches_torch(
        lambda x: F.unfold(x, g["kernel"], g["dilation"], g["padding"], g["stride"]), [IMAGES],
        lambda x: TF.unfold(x, g["kernel"], g["dilation"], g["padding"], g["stride"]), dtype=dtype,
    )


@pytest.mark.parametrize("name", ["3x3 stride 2 pad 1", "3x3 dilation 2", "2x4 pad (1, 2)"])
def test_unfold_backward_matches_finite_differences(name):
    g = GEOMETRIES[name]
    x = Tensor(RNG.normal(size=(1, 2, 5, 6)))
    weights = Tensor(RNG.normal(size=F.unfold(x, g["kernel"], g["dilation"], g["padding"], g["stride"]).shape))
    assert gradcheck(lambda t: (F.unfold(t, g["kernel"], g["dilation"], g["padding"], g["stride"]) * weights).sum(),
                     [x], eps=1e-6, atol=1e-8, rtol=1e-6)


VIEWS = {  # views whose memory is not laid out (N, C, H, W) row by row: im2col reads any strides
    "transposed": (lambda x: x.transpose(2, 3), lambda x: x.transpose(2, 3)),
    "every other column": (lambda x: x[..., ::2], lambda x: x[..., ::2]),
    "flipped rows (negative strides)": (lambda x: x[:, :, ::-1], lambda x: torch.flip(x, dims=(2,))),
    "one channel expanded": (lambda x: x[:, :1].expand(2, 3, 7, 8), lambda x: x[:, :1].expand(2, 3, 7, 8)),
}
VIEW_KERNELS = RNG.normal(size=(4, 3, 2, 2))


@pytest.mark.parametrize("view", list(VIEWS))
def test_unfold_pooling_and_conv2d_read_views_like_torch(view):
    ours_view, torch_view = VIEWS[view]
    assert not ours_view(Tensor(IMAGES)).data.flags.c_contiguous
    for ours, theirs in [
        (lambda x: F.unfold(x, 3, 1, 1, 2), lambda x: TF.unfold(x, 3, 1, 1, 2)),
        (lambda x: F.max_pool2d(x, 2), lambda x: TF.max_pool2d(x, 2)),
        (lambda x, w: F.conv2d(x, w, padding=1), lambda x, w: TF.conv2d(x, w, padding=1)),
    ]:
        arrays = [IMAGES, VIEW_KERNELS][:ours.__code__.co_argcount]
        assert_matches_torch(lambda x, *w: ours(ours_view(x), *w), arrays,
                             lambda x, *w: theirs(torch_view(x), *w))


def test_unfold_sends_a_pixel_the_sum_over_every_patch_that_copied_it():
    x = Tensor(np.zeros((1, 1, 3, 3)), requires_grad=True)
    F.unfold(x, 2).sum().backward()
    # the centre pixel lies in all four 2x2 patches, a corner in one
    np.testing.assert_array_equal(x.grad[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(GEOMETRIES))
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv2d_matches_torch(name, with_bias, dtype):
    g = GEOMETRIES[name]
    kh, kw = g["kernel"] if isinstance(g["kernel"], tuple) else (g["kernel"], g["kernel"])
    weight, bias = RNG.normal(size=(4, 3, kh, kw)), RNG.normal(size=4)
    inputs = [IMAGES, weight, bias] if with_bias else [IMAGES, weight]
    tol = {} if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    assert_matches_torch(
        lambda x, w, b=None: F.conv2d(x, w, b, g["stride"], g["padding"], g["dilation"]), inputs,
        lambda x, w, b=None: TF.conv2d(x, w, b, g["stride"], g["padding"], g["dilation"]), dtype=dtype, **tol,
    )


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), o=st.integers(1, 3), h=st.integers(3, 7), w=st.integers(3, 7),
       k=st.integers(1, 3), stride=st.integers(1, 3), padding=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_conv2d_on_random_shapes_matches_torch(n, c, o, h, w, k, stride, padding, seed):
    rng = np.random.default_rng(seed)
    x, weight, bias = rng.normal(size=(n, c, h, w)), rng.normal(size=(o, c, k, k)), rng.normal(size=o)
    assert_matches_torch(lambda x, wt, b: F.conv2d(x, wt, b, stride, padding), [x, weight, bias],
                         lambda x, wt, b: TF.conv2d(x, wt, b, stride, padding), rtol=1e-9, atol=1e-11)


POOLS = {  # kernel, stride, padding
    "2x2": (2, None, 0),
    "3x3 stride 2 pad 1": (3, 2, 1),
    "(2, 3) stride 1": ((2, 3), 1, 0),
    "3x3 stride (1, 2)": (3, (1, 2), (1, 0)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(POOLS))
@pytest.mark.parametrize("pool", ["max_pool2d", "avg_pool2d"])
def test_pooling_matches_torch(pool, name, dtype):
    kernel, stride, padding = POOLS[name]
    assert_matches_torch(lambda x: getattr(F, pool)(x, kernel, stride, padding), [IMAGES],
                         lambda x: getattr(TF, pool)(x, kernel, stride, padding), dtype=dtype)


def test_max_pool_sends_the_gradient_to_the_first_of_tied_maxima_like_torch():
    x = np.round(RNG.normal(size=(2, 2, 6, 6)))  # many ties inside windows
    assert_matches_torch(lambda t: F.max_pool2d(t, 3, 1, 1), [x], lambda t: TF.max_pool2d(t, 3, 1, 1))


def test_max_pool_never_picks_the_padding():
    x = Tensor(-np.ones((1, 1, 2, 2)) * 100)
    assert (F.max_pool2d(x, 3, 1, 1).numpy() == -100).all()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_conv_modules_match_torch_twins(dtype):
    tinyad.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 2, (2, 2), bias=False, dtype=dtype), nn.AvgPool2d(2, 1))
    twin = torch_twin(model, getattr(torch, dtype))
    x = IMAGES.astype(dtype)
    dy_shape = twin(torch.tensor(x)).shape
    results = run_both(model, twin, x, RNG.normal(size=tuple(dy_shape)).astype(dtype))
    assert_runs_match(results, **tolerance(dtype))


def test_conv2d_initialization_bound_is_one_over_sqrt_fan_in():
    tinyad.manual_seed(1)
    layer = nn.Conv2d(3, 8, 5)
    bound = 1 / np.sqrt(3 * 5 * 5)
    assert layer.weight.shape == (8, 3, 5, 5) and layer.bias.shape == (8,)
    assert np.abs(layer.weight.numpy()).max() <= bound and np.abs(layer.weight.numpy()).max() > 0.9 * bound


@pytest.mark.parametrize("call, message", [
    (lambda: F.conv2d(Tensor(IMAGES), Tensor(np.ones((4, 2, 3, 3)))), "the input has 3 channels, the weight expects 2"),
    (lambda: F.conv2d(Tensor(IMAGES), Tensor(np.ones((4, 3, 9, 3)))), "the kernel spans 9 pixels"),
    (lambda: F.conv2d(Tensor(IMAGES[0]), Tensor(np.ones((4, 3, 3, 3)))), r"must be \(N, C, H, W\)"),
    (lambda: F.unfold(Tensor(IMAGES), 0), "kernel_size must be an int >= 1"),
    (lambda: F.max_pool2d(Tensor(IMAGES), 2, padding=2), "at most half the kernel size"),
    (lambda: nn.Conv2d(3, 4, 3)(Tensor(IMAGES[:, :2])), r"expected an input of shape \(N, 3, H, W\)"),
])
def test_bad_convolution_arguments_say_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_conv2d_graph_is_im2col_then_a_matrix_product():
    x = Tensor(IMAGES, requires_grad=True)
    out = F.conv2d(x, Tensor(RNG.normal(size=(4, 3, 3, 3)), requires_grad=True))
    ops = [node.op for node in tinyad.graph.topological_order(out) if node.parents]
    assert "im2col" in ops and "@" in ops


def test_conv2d_under_no_grad_records_nothing():
    with tinyad.no_grad():
        out = F.conv2d(Tensor(IMAGES, requires_grad=True), Tensor(np.ones((2, 3, 3, 3)), requires_grad=True))
    assert out.parents == () and out.shape == (2, 2, 5, 6)


def test_im2col_backward_matches_finite_differences():
    from tinyad.ops.convolution import im2col

    x = Tensor(RNG.normal(size=(2, 2, 4, 5)))
    weights = Tensor(RNG.normal(size=im2col(x, (2, 3), 1, 1, (2, 1)).shape))
    assert gradcheck(lambda t: (im2col(t, (2, 3), 1, 1, (2, 1)) * weights).sum(), [x], eps=1e-6, atol=1e-8, rtol=1e-6)


def test_im2col_columns_are_the_patches_of_the_batch():
    from tinyad.ops.convolution import im2col

    x = RNG.normal(size=(2, 3, 4, 4))
    columns = im2col(Tensor(x), 2, stride=2).numpy()  # (3 * 2 * 2, 2 * 2 * 2)
    # column n * 4 + y * 2 + x is example n's patch at rows 2y..2y+1, columns 2x..2x+1, all channels
    np.testing.assert_array_equal(columns[:, 1 * 4 + 1 * 2 + 0], x[1, :, 2:4, 0:2].reshape(-1))
