"""tinyad.check: gradcheck against finite differences, compare/format_table for
hand derivations, and a hand-derived neuron."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

import tinyad
from tinyad import Value
from tinyad.check import Comparison, compare, format_table, gradcheck

from oracle import close, run_torch


# --------------------------------------------------------------------------
# gradcheck
# --------------------------------------------------------------------------


def test_gradcheck_returns_true_for_a_correct_function_of_several_inputs():
    def fn(a, b, c):
        return (a * b).tanh() + (c.sigmoid() + 0.5).log() * a - b / (c * c + 1.0) + a.exp() ** 0.5

    assert gradcheck(fn, [Value(0.3), Value(-1.2), Value(0.8)]) is True


def test_gradcheck_returns_true_for_every_elementary_op():
    def fn(a):
        return a.exp() + a.log() + a.tanh() + a.sigmoid() + a.relu() + a.sqrt() + a.abs() + a**2.5 + 2**a

    assert gradcheck(fn, [Value(0.7)]) is True


def _wrong_tanh_backward(node, upstream):
    return ((1.0 + node.data * node.data) * upstream,)  # sign error: should be 1 - t^2


def test_gradcheck_raises_naming_input_index_engine_and_numeric_value_for_a_wrong_op(monkeypatch):
    monkeypatch.setattr(Value, "_tanh_backward", staticmethod(_wrong_tanh_backward))
    x0, x1 = 0.3, 0.9
    t = math.tanh(x1)
    with pytest.raises(AssertionError) as caught:
        gradcheck(lambda a, b: a * 2.0 + b.tanh(), [Value(x0), Value(x1)])
    message = str(caught.value)
    assert "input 1" in message and "input 0" not in message
    assert f"engine {1.0 + t * t!r}" in message
    numeric = float(re.search(r"finite differences (\S+)", message).group(1))
    assert close(numeric, 1.0 - t * t, 1e-7, 0.0)


def test_gradcheck_error_names_the_element_index_of_a_wrong_tensor_gradient(monkeypatch):
    from tinyad import Tensor

    def wrong(node, upstream):
        return (upstream * (1.0 + node.data * node.data),)

    monkeypatch.setattr(tinyad.ops.elementwise, "_tanh_backward", wrong)
    # right at element 0 (tanh 0 = 0), wrong at element 1
    with pytest.raises(AssertionError, match=r"input 1 at index \(1,\).*engine 1\.2"):
        gradcheck(
            lambda a, b: a.sum() + b.tanh().sum(),
            [Tensor(np.array([0.1, 0.2])), Tensor(np.array([0.0, 0.5]))],
        )


def test_gradcheck_error_names_the_input_label(monkeypatch):
    monkeypatch.setattr(Value, "_tanh_backward", staticmethod(_wrong_tanh_backward))
    with pytest.raises(AssertionError, match=r"input 0 \('w'\)"):
        gradcheck(lambda a: a.tanh(), [Value(0.5, label="w")])


def test_gradcheck_passes_again_once_the_wrong_op_is_restored(monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(Value, "_tanh_backward", staticmethod(_wrong_tanh_backward))
        with pytest.raises(AssertionError):
            gradcheck(lambda a: a.tanh(), [Value(0.5)])
    assert gradcheck(lambda a: a.tanh(), [Value(0.5)]) is True


def test_gradcheck_does_not_modify_the_callers_inputs():
    x, y = Value(0.6), Value(-0.4)
    (x * y).backward()
    before = [(v.data, v.grad, v.messages) for v in (x, y)]
    assert gradcheck(lambda a, b: a * b.exp(), [x, y])
    assert [(v.data, v.grad, v.messages) for v in (x, y)] == before
    assert tinyad.is_grad_enabled()


def test_gradcheck_rejects_a_function_that_returns_a_plain_number():
    with pytest.raises(TypeError, match="Value"):
        gradcheck(lambda a: 1.0, [Value(0.5)])


# --------------------------------------------------------------------------
# compare and format_table
# --------------------------------------------------------------------------


def test_compare_equal_inputs_are_exact_and_approximate_with_zero_maxdiff():
    row = compare("g", 0.1 + 0.2, 0.1 + 0.2, show=False)
    assert row == Comparison("g", True, True, 0.0)


def test_compare_slightly_different_inputs_are_approximate_but_not_exact():
    row = compare("g", 0.3, 0.1 + 0.2, show=False)
    assert row.exact is False and row.approximate is True
    assert row.maxdiff == abs(0.3 - (0.1 + 0.2)) > 0.0


def test_compare_very_different_inputs_are_neither_exact_nor_approximate():
    row = compare("g", 1.0, 1.5, show=False)
    assert row.exact is False and row.approximate is False
    assert row.maxdiff == 0.5


def test_compare_arrays_reports_the_largest_elementwise_difference():
    row = compare("g", [1.0, 2.0, 3.0], np.array([1.0, 2.25, 2.5]), show=False)
    assert row.exact is False and row.approximate is False
    assert row.maxdiff == 0.5


def test_compare_uses_the_grad_of_a_value():
    x = Value(3.0)
    (x * x).backward()
    assert compare("x", 6.0, x, show=False) == Comparison("x", True, True, 0.0)
    assert compare("x", 3.0, x, show=False).exact is False  # not its data


def test_compare_prints_a_row_with_exact_approximate_and_maxdiff(capsys):
    row = compare("dL/dw", 1.0, 1.0 + 1e-12)
    printed = capsys.readouterr().out
    assert "dL/dw" in printed
    assert "exact" in printed and "approximate" in printed and "maxdiff" in printed
    assert printed.strip() == str(row)


def test_compare_show_false_prints_nothing(capsys):
    compare("g", 1.0, 1.0, show=False)
    assert capsys.readouterr().out == ""


def test_compare_shape_mismatch_raises_value_error_naming_both_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(\)"):
        compare("g", [1.0, 2.0, 3.0], 1.0, show=False)


def test_format_table_has_a_header_a_rule_and_one_aligned_line_per_row():
    rows = [
        compare("dL/dw1", 1.0, 1.0, show=False),
        compare("a_much_longer_name", 2.0, 2.0 + 1e-12, show=False),
        compare("b", 1.0, 3.0, show=False),
    ]
    lines = format_table(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[0].split() == ["name", "|", "exact", "|", "approximate", "|", "maxdiff", "|", "verdict"]
    assert set(lines[1]) <= {"-", "+"}
    for line, row in zip(lines[2:], rows):
        cells = [cell.strip() for cell in line.split("|")]
        assert cells[:3] == [row.name, str(row.exact), str(row.approximate)]
        assert float(cells[3]) == pytest.approx(row.maxdiff, rel=1e-2)
        assert cells[4] == row.verdict
    bars = {tuple(i for i, ch in enumerate(line) if ch in "|+") for line in lines}
    assert [row.verdict for row in rows] == ["agrees, bit for bit", "agrees up to rounding", "DIFFERS"]
    assert len(bars) == 1, "column separators are not aligned"


# --------------------------------------------------------------------------
# A neuron derived by hand
# --------------------------------------------------------------------------


def test_hand_derived_neuron_gradients_agree_with_the_engine_and_torch():
    x1_, x2_, w1_, w2_, b_ = 2.0, 0.0, -3.0, 1.0, 6.8813735870195432
    # by hand: o = tanh(n), n = w1 x1 + w2 x2 + b, do/dn = 1 - o^2
    o_ = math.tanh(w1_ * x1_ + w2_ * x2_ + b_)
    do_dn = 1.0 - o_**2
    by_hand = {
        "x1": do_dn * w1_,
        "x2": do_dn * w2_,
        "w1": do_dn * x1_,
        "w2": do_dn * x2_,
        "b": do_dn,
    }
    assert close(o_, math.sqrt(0.5), 1e-9, 0.0)  # b was chosen so that o = 1/sqrt(2)
    assert close(by_hand["w1"], 1.0, 1e-9, 0.0)  # (1 - 1/2) * 2

    x1, x2, w1, w2, b = (Value(v, label=k) for k, v in zip(by_hand, (x1_, x2_, w1_, w2_, b_)))
    o = (w1 * x1 + w2 * x2 + b).tanh()
    o.backward()
    assert close(o.data, o_, 1e-15, 0.0)
    engine = {"x1": x1, "x2": x2, "w1": w1, "w2": w2, "b": b}
    rows = [compare(name, by_hand[name], engine[name], show=False) for name in by_hand]
    assert all(row.approximate for row in rows), format_table(rows)
    assert max(row.maxdiff for row in rows) < 1e-12

    _, torch_grads = run_torch(
        lambda x1, x2, w1, w2, b: (w1 * x1 + w2 * x2 + b).tanh(), x1_, x2_, w1_, w2_, b_
    )
    for name, want in zip(by_hand, torch_grads):
        assert close(engine[name].grad, want, 1e-12, 1e-15), name


def test_a_row_off_only_by_rounding_reads_as_agreeing_not_as_a_failure(capsys):
    row = compare("dL/dw", 0.1 + 0.2, 0.3)
    printed = capsys.readouterr().out
    assert row.exact is False and row.approximate is True
    assert printed.rstrip().endswith("agrees up to rounding")
    assert "DIFFERS" in str(compare("dL/dw", 1.0, 2.0, show=False))
