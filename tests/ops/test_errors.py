"""Errors of the Tensor engine: the right exception type, a message that names
the operation and the offending shapes or values, and an engine that still
computes correct gradients afterwards (``assert_engine_still_works``).
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import tinyad
from tinyad import Tensor
from tinyad.backend import Backend

from tensor_oracle import assert_engine_still_works


def _leaves():
    a = Tensor(np.arange(1.0, 7.0).reshape(2, 3), requires_grad=True)
    b = Tensor(np.arange(1.0, 5.0), requires_grad=True)
    return a, b


# ==========================================================================
# Shape mismatches
# ==========================================================================

BROADCAST_OPS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "maximum": tinyad.maximum,
    "minimum": tinyad.minimum,
    "where": lambda a, b: tinyad.where(a.detach() > 0, a, b),
    "**": lambda a, b: a**b,
}


@pytest.mark.parametrize("op", list(BROADCAST_OPS))
def test_broadcast_mismatch_raises_value_error_naming_op_and_both_shapes(op):
    a, b = _leaves()
    with pytest.raises(ValueError) as info:
        BROADCAST_OPS[op](a, b)
    message = str(info.value)
    assert message.startswith(f"{op}:"), message
    assert "(2, 3)" in message and "(4,)" in message, message
    assert_engine_still_works(a, b)


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_broadcast_mismatch_with_tensor_on_the_right_names_shapes_in_operand_order(op):
    a, b = _leaves()
    with pytest.raises(ValueError, match=re.escape(f"{op}: shapes (4,) and (2, 3)")):
        BROADCAST_OPS[op](b, a)
    assert_engine_still_works(a, b)


def test_where_condition_shape_mismatch_names_every_shape():
    a, _ = _leaves()
    with pytest.raises(ValueError) as info:
        tinyad.where(np.ones(5, dtype=bool), a, 0.0)
    assert "where" in str(info.value) and "(5,)" in str(info.value) and "(2, 3)" in str(info.value)
    assert_engine_still_works(a)


@pytest.mark.parametrize(
    "left, right",
    [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3), (2,)), ((2, 3, 4), (5, 4, 2)), ((4,), (3, 2))],
)
def test_matmul_mismatch_names_at_sign_and_both_shapes(left, right):
    a = Tensor(np.ones(left), requires_grad=True)
    b = Tensor(np.ones(right), requires_grad=True)
    with pytest.raises(ValueError) as info:
        a @ b
    message = str(info.value)
    assert message.startswith("@:"), message
    assert str(left) in message and str(right) in message, message
    assert_engine_still_works(a, b)


def test_matmul_with_a_0d_operand_raises_value_error():
    a = Tensor(2.0, requires_grad=True)
    b = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match="@"):
        a @ b
    assert_engine_still_works(a, b)


@pytest.mark.parametrize("fn", [
    lambda ts: tinyad.concatenate(ts, axis=0),
    lambda ts: tinyad.stack(ts, axis=0),
], ids=["concatenate", "stack"])
def test_concatenate_and_stack_shape_mismatch_names_op_and_shapes(fn):
    a, b = _leaves()
    with pytest.raises(ValueError) as info:
        fn([a, b])
    message = str(info.value)
    assert "(2, 3)" in message and "(4,)" in message, message
    assert_engine_still_works(a, b)


@pytest.mark.parametrize("fn", [tinyad.concatenate, tinyad.stack], ids=["concatenate", "stack"])
def test_concatenate_and_stack_of_nothing_raise_value_error(fn):
    with pytest.raises(ValueError, match="at least one"):
        fn([])
    assert_engine_still_works()


# ==========================================================================
# backward
# ==========================================================================


def test_backward_on_non_scalar_without_gradient_raises():
    a, b = _leaves()
    out = a * 2.0
    with pytest.raises(RuntimeError, match="gradient is needed for non-scalar outputs") as info:
        out.backward()
    assert "(2, 3)" in str(info.value)
    assert a.grad is None
    assert_engine_still_works(a, b)


@pytest.mark.parametrize("bad_shape", [(3,), (3, 2), (2, 3, 1), ()])
def test_backward_with_wrongly_shaped_gradient_raises_naming_both_shapes(bad_shape):
    a, b = _leaves()
    out = a.exp()
    with pytest.raises(ValueError) as info:
        out.backward(np.ones(bad_shape))
    message = str(info.value)
    assert "backward" in message and str(bad_shape) in message and "(2, 3)" in message, message
    assert a.grad is None
    out.backward(np.ones((2, 3)))  # the same graph still works with the right shape
    np.testing.assert_allclose(a.grad, np.exp(np.arange(1.0, 7.0).reshape(2, 3)))
    assert_engine_still_works(a, b)


def test_backward_on_tensor_that_does_not_require_grad_raises_runtime_error():
    c = Tensor([1.0, 2.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        (c * 2.0).sum().backward()
    assert_engine_still_works()


def test_backward_on_result_computed_under_no_grad_raises_runtime_error():
    a, b = _leaves()
    with tinyad.no_grad():
        out = (a * 2.0).sum()
    with pytest.raises(RuntimeError, match="does not require grad"):
        out.backward()
    assert_engine_still_works(a, b)


# ==========================================================================
# Construction
# ==========================================================================


@pytest.mark.parametrize("data", [np.array([1, 2, 3]), np.array([True, False])], ids=["int", "bool"])
def test_non_float_tensor_with_requires_grad_raises_value_error(data):
    with pytest.raises(ValueError, match="floating-point") as info:
        Tensor(data, requires_grad=True)
    assert str(data.dtype) in str(info.value)
    assert_engine_still_works()


def test_explicit_integer_dtype_with_requires_grad_raises_value_error():
    with pytest.raises(ValueError, match="int64"):
        Tensor([1.0, 2.0], dtype="int64", requires_grad=True)
    assert_engine_still_works()


def test_requires_grad_in_place_on_integer_tensor_raises_value_error():
    t = Tensor(np.array([1, 2]))
    with pytest.raises(ValueError, match="floating-point"):
        t.requires_grad_()
    assert t.requires_grad is False
    assert_engine_still_works()


def test_unknown_device_name_raises_value_error():
    with pytest.raises(ValueError, match=r"unknown device 'tpu'.*'cpu' or 'cuda'"):
        Tensor([1.0], device="tpu")
    assert_engine_still_works()


def test_item_of_a_multi_element_tensor_raises_value_error_naming_shape():
    a, b = _leaves()
    with pytest.raises(ValueError, match=re.escape("(2, 3)")):
        a.item()
    assert_engine_still_works(a, b)


@pytest.mark.parametrize("other", ["x", None, [1.0, 2.0, 3.0]], ids=["str", "None", "list"])
def test_unsupported_operand_type_raises_type_error(other):
    a, b = _leaves()
    with pytest.raises(TypeError):
        a + other
    assert_engine_still_works(a, b)


# ==========================================================================
# Domain errors: the op and the offending value are named
# ==========================================================================


@pytest.mark.parametrize("values, bad", [([1.0, 0.0, 3.0], "0.0"), ([2.0, -1.5], "-1.5")])
def test_log_of_non_positive_value_raises_naming_op_and_value(values, bad):
    x = Tensor(values, requires_grad=True)
    with pytest.raises(ValueError) as info:
        x.log()
    message = str(info.value)
    assert message.startswith("log:") and bad in message and "index (1,)" in message, message
    assert_engine_still_works(x)


def test_sqrt_of_negative_value_raises_naming_op_and_value():
    x = Tensor([[4.0, 1.0], [-2.25, 0.0]], requires_grad=True)
    with pytest.raises(ValueError) as info:
        x.sqrt()
    message = str(info.value)
    assert message.startswith("sqrt:") and "-2.25" in message and "(1, 0)" in message, message
    assert_engine_still_works(x)


@pytest.mark.parametrize("divide", [
    lambda x: x / Tensor([1.0, 0.0, 2.0]),
    lambda x: x / 0,
    lambda x: x / 0.0,
    lambda x: 1.0 / (x - 2.0),
], ids=["tensor-divisor", "int-zero", "float-zero", "reflected"])
def test_division_by_zero_raises_naming_op_and_value(divide):
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(ValueError) as info:
        divide(x)
    message = str(info.value)
    assert message.startswith("/:") and "division by zero" in message and "0.0" in message, message
    assert_engine_still_works(x)


@pytest.mark.parametrize("exponent", [-1, -2.5])
def test_zero_to_a_negative_power_raises_naming_op(exponent):
    x = Tensor([0.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"\*\*: .*division by zero"):
        x**exponent
    assert_engine_still_works(x)


def test_negative_base_to_a_fractional_power_raises_naming_op_and_value():
    x = Tensor([1.0, -3.5], requires_grad=True)
    with pytest.raises(ValueError) as info:
        x**0.5
    assert str(info.value).startswith("**:") and "-3.5" in str(info.value)
    assert_engine_still_works(x)


@pytest.mark.parametrize("power", [
    lambda x: x ** Tensor([0.5, 0.5]),
    lambda x: (-3.5) ** Tensor([2.0, 0.5]),
    lambda x: x.reshape(2, 1) ** Tensor([2.0, float("nan")]),
], ids=["tensor-tensor", "number-tensor", "broadcast-nan"])
def test_negative_base_to_a_fractional_tensor_exponent_raises_as_for_a_number(power):
    # docs/conventions.md: a negative base with a fractional exponent is refused on the CPU,
    # whether the exponent is a number or a tensor that needs no gradient (torch gives NaN)
    x = Tensor([-3.5, 2.0], requires_grad=True)  # the base, where the op has one; checked afterwards
    with pytest.raises(ValueError) as info:
        power(x)
    message = str(info.value)
    assert message.startswith("**:") and "negative base" in message, message
    assert_engine_still_works(x)
    assert (Tensor([-2.0, 2.0]) ** Tensor([3.0, 0.5])).data.tolist() == [-8.0, 2**0.5]  # integers still fine


@pytest.mark.parametrize("exponent", [0.5, -0.5, 1.5, -2.5])
@pytest.mark.parametrize("base", [
    [4.0, float("nan")], [float("inf"), 1.0], [0.0, 9.0], [-0.0, 9.0], [], [[1.0], [float("-inf")]],
], ids=["nan", "inf", "zero", "minus-zero", "empty", "minus-inf"])
def test_a_fractional_power_refuses_only_zero_to_a_negative_power_and_negative_bases(base, exponent):
    # the domain check first looks only at the smallest base; these are the
    # bases where that shortcut could go wrong (NaN, signed zero, no element)
    data = np.array(base, dtype=np.float64)
    with np.errstate(all="ignore"):
        expected = torch.tensor(data) ** exponent
    zero_to_negative = exponent < 0 and bool((data == 0).any())
    negative_base = bool((data < 0).any())
    x = Tensor(data, requires_grad=True)
    if zero_to_negative or negative_base:
        with pytest.raises(ValueError, match=r"^\*\*: "):
            x**exponent
        assert_engine_still_works(x)
    else:
        np.testing.assert_array_equal((x**exponent).data, expected.numpy())


def test_negative_base_with_an_exponent_that_requires_grad_raises():
    base = Tensor([2.0, -1.0])
    exponent = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"\*\*: .*ln"):
        base**exponent
    assert_engine_still_works(exponent)


# ==========================================================================
# Reductions and shape changes
# ==========================================================================


@pytest.mark.parametrize("shape, axis", [((1,), None), ((3, 1), 1), ((1, 4), (0,)), ((), None)])
def test_var_with_one_value_and_correction_one_raises_value_error(shape, axis):
    x = Tensor(np.ones(shape), requires_grad=True)
    with pytest.raises(ValueError, match="var: .*correction=1"):
        x.var(axis=axis, correction=1)
    # correction=0 on the same data is fine and gives 0 variance like torch
    np.testing.assert_array_equal(x.var(axis=axis, correction=0).numpy(), np.zeros(np.var(np.ones(shape), axis=axis).shape))
    assert_engine_still_works(x)


@pytest.mark.parametrize("op", ["sum", "mean", "max", "var"])
@pytest.mark.parametrize("axis", [2, -3, (0, 2), 5])
def test_reduction_over_out_of_range_axis_raises_value_error_naming_op_and_axis(op, axis):
    a, b = _leaves()
    with pytest.raises(ValueError) as info:
        getattr(a, op)(axis=axis)
    message = str(info.value)
    assert message.startswith(f"{op}:") and "out of range" in message, message
    assert_engine_still_works(a, b)


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reduction_over_a_repeated_axis_raises_value_error(op):
    a, b = _leaves()
    with pytest.raises(ValueError, match="repeats"):
        getattr(a, op)(axis=(1, -1))
    assert_engine_still_works(a, b)


@pytest.mark.parametrize("target", [(4, 2), (-1, 4), (7,), (2, 2, 2)])
def test_reshape_to_incompatible_shape_raises_value_error_naming_both_shapes(target):
    a, b = _leaves()
    with pytest.raises(ValueError) as info:
        a.reshape(target)
    message = str(info.value)
    assert message.startswith("reshape:") and "(2, 3)" in message and str(target) in message, message
    assert_engine_still_works(a, b)


@pytest.mark.parametrize("dims", [(0, 0), (0,), (0, 1, 2), (0, 2), (-3, 1), (1, 4)])
def test_permute_with_invalid_axes_raises_value_error(dims):
    a, b = _leaves()
    with pytest.raises(ValueError, match="permute"):
        a.permute(dims)
    assert_engine_still_works(a, b)


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_a_float_axis_is_refused_before_and_after_the_same_int_axis_is_used(op):
    # reductions remember normalized axes; 1.0 == 1 as a key, so a float must not be
    # handed the answer remembered for the int (nor spoil it for the int)
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    for axis in [(1.0,), (1,), (1.0,), 1.0, 1, 1.0]:
        if isinstance((axis if isinstance(axis, tuple) else (axis,))[0], float):
            with pytest.raises(TypeError):
                getattr(x, op)(axis=axis)
        else:
            np.testing.assert_array_equal(getattr(x, op)(axis=axis).data, getattr(x.data, op)(axis=axis))


def test_permute_rejects_out_of_range_axis_that_wraps_to_a_valid_permutation():
    x = Tensor(np.zeros((2, 3, 4)), requires_grad=True)
    with pytest.raises(ValueError, match="permute"):
        x.permute(0, 1, 5)  # 5 % 3 == 2, but axis 5 does not exist (torch: IndexError)
    assert_engine_still_works(x)


@pytest.mark.parametrize("dims", [(0, 2), (-3, 0)])
def test_transpose_with_out_of_range_axis_raises_value_error(dims):
    a, b = _leaves()
    with pytest.raises(ValueError, match="transpose"):
        a.transpose(*dims)
    assert_engine_still_works(a, b)


def test_indexing_out_of_bounds_raises_index_error_naming_the_shape():
    a, b = _leaves()
    with pytest.raises(IndexError, match=re.escape("(2, 3)")):
        a[5]
    assert_engine_still_works(a, b)


@pytest.mark.parametrize("fn", [lambda t: t.max(), lambda t: t.mean()], ids=["max", "mean"])
def test_reduction_of_zero_elements_raises_value_error(fn):
    x = Tensor(np.zeros((0, 3)), requires_grad=True)
    with pytest.raises(ValueError, match="zero elements"):
        fn(x)
    assert_engine_still_works()


# ==========================================================================
# Devices
# ==========================================================================


def _on_fake_device(values):
    """A tensor whose backend claims to be another device (only 'cpu' exists here)."""
    t = Tensor(values, requires_grad=True)
    t.backend = Backend("fake", np)
    return t


MIXED_DEVICE_OPS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "@": lambda a, b: a @ b,
    "**": lambda a, b: a**b,
    "maximum": tinyad.maximum,
    "where": lambda a, b: tinyad.where(np.array([True, False]), a, b),
    "concatenate": lambda a, b: tinyad.concatenate([a, b]),
    "stack": lambda a, b: tinyad.stack([a, b]),
}


@pytest.mark.parametrize("op", list(MIXED_DEVICE_OPS))
@pytest.mark.parametrize("order", ["cpu-first", "fake-first"])
def test_mixing_devices_raises_value_error_naming_op_and_both_devices(op, order):
    cpu = Tensor([1.0, 2.0], requires_grad=True)
    fake = _on_fake_device([3.0, 4.0])
    first, second = (cpu, fake) if order == "cpu-first" else (fake, cpu)
    with pytest.raises(ValueError) as info:
        MIXED_DEVICE_OPS[op](first, second)
    message = str(info.value)
    assert message.startswith(f"{op}:"), message
    assert "cpu" in message and "fake" in message and "device" in message, message
    assert_engine_still_works(cpu)


def test_fake_device_tensor_reports_its_device():
    assert _on_fake_device([1.0]).device == "fake"


@pytest.mark.parametrize("call, shapes", [
    (lambda: Tensor(np.ones((2, 3))).reshape(4, 2), "(2, 3) and (4, 2)"),
    (lambda: Tensor(np.ones((2, 3))).expand(4, 3, 3), "(2, 3) and (4, 3, 3)"),
    (lambda: tinyad.concatenate([Tensor(np.ones((2, 3))), Tensor(np.ones((2, 4)))], axis=0), "(2, 3) and (2, 4)"),
    (lambda: tinyad.stack([Tensor(np.ones(2)), Tensor(np.ones(3)), Tensor(np.ones(2))]), "(2,), (3,) and (2,)"),
    (lambda: tinyad.where(np.ones(5, dtype=bool), Tensor(np.ones(2)), 0.0), "(5,), (2,) and ()"),
    (lambda: tinyad.nn.functional.conv2d(Tensor(np.ones((1, 1, 4, 4))), Tensor(np.ones((2, 1, 3, 3))),
                                         Tensor(np.ones(3))), "(3,) and (2, 1, 3, 3)"),
])
def test_every_shape_mismatch_names_the_op_and_each_shape_in_one_format(call, shapes):
    with pytest.raises(ValueError) as caught:
        call()
    op = str(caught.value).split(":")[0]
    assert str(caught.value).startswith(f"{op}: shapes {shapes} "), str(caught.value)
    assert_engine_still_works()
