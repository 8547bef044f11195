"""Shape and indexing ops (tinyad/ops/shape.py) against PyTorch autograd, float64: reshape,
permute, transpose, indexing, concatenate and stack (see ``tensor_oracle``).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyad
from tinyad import Tensor

from tensor_oracle import arrays, assert_matches_torch, shapes

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RNG_SEED = 20240601


def fixed(shape, low=-2.0, high=2.0, seed=0):
    return np.random.default_rng(RNG_SEED + seed).uniform(low, high, size=shape)


# ==========================================================================
# Shape changes
# ==========================================================================


@st.composite
def reshape_case(draw):
    x = draw(arrays(shapes(0, 4, max_side=3)))
    dims = [d for d in x.shape if d != 1]
    dims = draw(st.permutations(dims)) if dims else []
    dims = list(dims) + [1] * draw(st.integers(0, 2))
    dims = draw(st.permutations(dims)) if dims else []
    target = list(dims)
    if target and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return x, tuple(target)


@pytest.mark.parametrize("style", ["tuple", "ints"])
@SETTINGS
@given(case=reshape_case())
def test_reshape_gradients_match_torch(style, case):
    x, target = case
    if style == "tuple":
        fn = lambda t: t.reshape(target)  # noqa: E731
    else:
        fn = lambda t: t.reshape(*target)  # noqa: E731
    assert_matches_torch(fn, [x], torch_fn=lambda t: t.reshape(target))


@pytest.mark.parametrize("target", [(-1,), (3, -1), (-1, 2, 2), (2, 3, 2)])
def test_reshape_with_minus_one_gives_torch_shape_and_gradients(target):
    x = fixed((2, 6), seed=16)
    run = assert_matches_torch(lambda t: t.reshape(*target), [x])
    assert run.value.shape == torch.zeros(2, 6).reshape(*target).shape


@st.composite
def permute_case(draw):
    x = draw(arrays(shapes(1, 4, max_side=3)))
    order = draw(st.permutations(range(x.ndim)))
    order = tuple(d - x.ndim if draw(st.booleans()) else d for d in order)
    return x, order


@pytest.mark.parametrize("style", ["tuple", "ints"])
@SETTINGS
@given(case=permute_case())
def test_permute_gradients_match_torch(style, case):
    x, order = case
    fn = (lambda t: t.permute(order)) if style == "tuple" else (lambda t: t.permute(*order))
    assert_matches_torch(fn, [x], torch_fn=lambda t: t.permute(*order))


@SETTINGS
@given(data=st.data())
def test_transpose_two_axes_gradients_match_torch(data):
    x = data.draw(arrays(shapes(2, 4, max_side=3)))
    dim0 = data.draw(st.integers(-x.ndim, x.ndim - 1))
    dim1 = data.draw(st.integers(-x.ndim, x.ndim - 1))
    assert_matches_torch(lambda t: t.transpose(dim0, dim1), [x])


def test_transpose_default_swaps_last_two_axes_like_torch_mT():
    x = fixed((2, 3, 4), seed=17)
    assert_matches_torch(lambda t: t.transpose(), [x], torch_fn=lambda t: t.mT)


@SETTINGS
@given(x=arrays(shapes(2, 2)))
def test_T_of_a_matrix_gradients_match_torch(x):
    assert_matches_torch(lambda t: t.T, [x])


def test_T_of_3d_tensor_reverses_all_axes_like_torch_permute():
    x = fixed((2, 3, 4), seed=18)
    assert_matches_torch(lambda t: t.T, [x], torch_fn=lambda t: t.permute(2, 1, 0))


# ---- indexing ---------------------------------------------------------------

MASK = fixed((4, 5), seed=19) > 0

INDEX_CASES = [
    # id, tinyad index, torch index (None: the same object)
    ("int", 2, None),
    ("negative-int", -1, None),
    ("two-ints", (1, -2), None),
    ("slice", slice(1, 3), None),
    ("slice-step", (slice(None), slice(None, None, 2)), None),
    ("negative-slice", (slice(-3, None), slice(None, -1)), None),
    ("none", (None, 1), None),
    ("none-middle", (slice(None), None, slice(1, 4)), None),
    ("ellipsis", (Ellipsis, 3), None),
    ("int-list-repeated", [0, 2, 0, 0, 3], None),
    ("int-array-repeated", np.array([3, 1, 3]), torch.tensor([3, 1, 3])),
    ("int-array-2d-repeated", np.array([[0, 0], [1, 0]]), torch.tensor([[0, 0], [1, 0]])),
    ("two-int-arrays-repeated-pairs", ([0, 0, 2, 0], [1, 1, 4, 1]), None),
    ("bool-mask-full", MASK, torch.tensor(MASK)),
    ("bool-mask-rows", np.array([True, False, True, True]), torch.tensor([True, False, True, True])),
    ("mixed-array-slice", ([1, 1, 3], slice(0, 2)), None),
    ("mixed-slice-array", (slice(None), [4, 4, 0]), None),
    ("mixed-int-array", (2, [0, 0, 1]), None),
    ("mixed-none-int-slice", (None, -1, slice(1, None)), None),
]


@pytest.mark.parametrize("index, torch_index", [c[1:] for c in INDEX_CASES], ids=[c[0] for c in INDEX_CASES])
@FEW
@given(x=arrays((4, 5)))
def test_getitem_gradients_match_torch(index, torch_index, x):
    theirs = index if torch_index is None else torch_index
    assert_matches_torch(lambda t: t[index], [x], torch_fn=lambda t: t[theirs])


@SETTINGS
@given(x=arrays(shapes(1, 3, max_side=4)), data=st.data())
def test_getitem_random_integer_indices_with_repeats_accumulate_like_torch(x, data):
    n = x.shape[0]
    index = data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=8))
    assert_matches_torch(lambda t: t[index], [x], torch_fn=lambda t: t[torch.tensor(index)])


def test_getitem_with_boolean_tensor_mask_matches_torch():
    x = fixed((3, 4), seed=20)
    assert_matches_torch(lambda t: t[t > 0], [x], torch_fn=lambda t: t[t > 0])


def test_getitem_element_used_twice_gets_both_gradients():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x[[0, 0, 2]] * Tensor([2.0, 5.0, 7.0])).sum().backward()
    np.testing.assert_array_equal(x.grad, [7.0, 0.0, 7.0])


# ---- concatenate and stack ----------------------------------------------------


@st.composite
def concatenate_case(draw):
    base = list(draw(shapes(1, 3, max_side=3)))
    axis = draw(st.integers(-len(base), len(base) - 1))
    count = draw(st.integers(1, 3))
    parts = []
    for _ in range(count):
        shape = list(base)
        shape[axis] = draw(st.integers(1, 3))
        parts.append(draw(arrays(tuple(shape))))
    return parts, axis


@SETTINGS
@given(case=concatenate_case())
def test_concatenate_gradients_match_torch_cat(case):
    parts, axis = case
    assert_matches_torch(lambda *ts: tinyad.concatenate(ts, axis=axis), parts,
                         torch_fn=lambda *ts: torch.cat(ts, dim=axis))


@st.composite
def stack_case(draw):
    shape = draw(shapes(0, 3, max_side=3))
    axis = draw(st.integers(-(len(shape) + 1), len(shape)))
    count = draw(st.integers(1, 3))
    return [draw(arrays(shape)) for _ in range(count)], axis


@SETTINGS
@given(case=stack_case())
def test_stack_gradients_match_torch_stack(case):
    parts, axis = case
    assert_matches_torch(lambda *ts: tinyad.stack(ts, axis=axis), parts,
                         torch_fn=lambda *ts: torch.stack(ts, dim=axis))


def test_concatenate_with_a_constant_part_sends_gradient_only_to_grad_inputs():
    parts = [fixed((2, 3), seed=21), fixed((1, 3), seed=22), fixed((2, 3), seed=23)]
    assert_matches_torch(lambda *ts: tinyad.concatenate(ts, axis=0), parts,
                         torch_fn=lambda *ts: torch.cat(ts, dim=0), requires_grad=(True, False, True))


def test_an_op_is_recorded_when_only_its_third_input_needs_a_gradient():
    # the third input sits in more_parents, not in the two parent slots
    parts = [fixed((2, 3), seed=25), fixed((2, 3), seed=26), fixed((2, 3), seed=27)]
    assert_matches_torch(lambda *ts: tinyad.stack(ts, axis=0), parts,
                         torch_fn=lambda *ts: torch.stack(ts, dim=0), requires_grad=(False, False, True))
    constants = [Tensor(part) for part in parts]
    assert not tinyad.concatenate(constants, axis=0).requires_grad


def test_stack_of_the_same_tensor_twice_adds_both_gradients_like_torch():
    x = fixed((2, 3), seed=24)
    assert_matches_torch(lambda t: tinyad.stack([t, t * 2.0], axis=1), [x],
                         torch_fn=lambda t: torch.stack([t, t * 2.0], dim=1))
