"""Graph semantics of the scalar engine: topological order, deep graphs,
gradient accumulation, zero_grad, no_grad, per-edge messages, and freeing
graphs by reference counting alone."""
from __future__ import annotations

import gc
import math
import pickle
import sys
import weakref

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

import tinyad
import tinyad.graph
from tinyad import Value

from oracle import Expression, close, expressions, run_torch

DEFAULT_RECURSION_LIMIT = 1000


def assert_parents_come_first(order):
    seen = set()
    for node in order:
        assert all(id(p) in seen for p in node.parents)
        assert id(node) not in seen, "a node appears twice"
        seen.add(id(node))


# --------------------------------------------------------------------------
# A chain of a million nodes, under the default recursion limit
# --------------------------------------------------------------------------

PAIRS = 500_000  # two op nodes per pair: 1,000,000 op nodes in the chain


@pytest.fixture(scope="module")
def million_chain():
    """x -> (* -1.0) -> (+ 0.5) -> (* -1.0) -> ... : 1,000,000 op nodes."""
    x = Value(2.0, label="x")
    first = y = x * -1.0
    y = y + 0.5
    for _ in range(PAIRS - 1):
        y = y * -1.0
        y = y + 0.5
    yield x, first, y
    del x, first, y


def test_recursion_limit_is_the_default_during_the_tests():
    assert sys.getrecursionlimit() == DEFAULT_RECURSION_LIMIT


def test_backward_through_a_million_node_chain_under_default_recursion_limit(million_chain):
    x, first, root = million_chain
    limit = sys.getrecursionlimit()
    assert limit <= DEFAULT_RECURSION_LIMIT
    root.backward()
    assert sys.getrecursionlimit() == limit
    # after an even number of negations and +0.5 steps the chain returns to x
    assert root.data == 2.0
    # 500,000 multiplications by -1: d root / d x = (-1)^500000
    assert x.grad == 1.0
    # the first node sits below 499,999 negations
    assert first.grad == -1.0
    # the constant -1.0 of the first multiplication gets x.data * upstream
    assert first.parents[1].grad == 2.0 * -1.0


def test_topological_order_of_a_million_node_chain_puts_parents_first(million_chain):
    x, first, root = million_chain
    order = tinyad.graph.topological_order(root)
    # 1,000,000 op nodes, one constant leaf per op, and x
    assert len(order) == 2 * 2 * PAIRS + 1
    assert order[-1] is root
    assert any(node is x for node in order[:2])
    assert_parents_come_first(order)


# --------------------------------------------------------------------------
# Topological order on small graphs
# --------------------------------------------------------------------------


def test_topological_order_lists_a_reused_node_once_and_root_last():
    x = Value(1.0)
    a = x * x
    b = a + x
    c = b * a
    order = tinyad.graph.topological_order(c)
    assert order[-1] is c
    assert sorted(map(id, order)) == sorted(map(id, [x, a, b, c]))
    assert_parents_come_first(order)


def _reachable(root):
    """Every node under ``root``, found the slow, obvious way (for comparison)."""
    found, todo = {}, [root]
    while todo:
        node = todo.pop()
        if id(node) not in found:
            found[id(node)] = node
            todo.extend(node.parents)
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions())
def test_random_expression_topological_order_is_every_reachable_node_once_parents_first(expr: Expression):
    # leaves go into the order as soon as they are met, inner nodes once their parents are in
    leaves = [Value(x) for x in expr.inputs]
    out = expr(*leaves)
    order = tinyad.graph.topological_order(out)
    assert order[-1] is out
    assert_parents_come_first(order)
    assert sorted(map(id, order)) == sorted(_reachable(out))


def test_topological_order_of_tensor_ops_with_many_leaf_inputs_puts_parents_first():
    # stack's third and later inputs sit in more_parents; leaves and inner nodes mixed
    leaves = [tinyad.Tensor([float(i)], requires_grad=True) for i in range(5)]
    inner = leaves[0] * leaves[1]
    out = tinyad.stack([leaves[2], inner, leaves[3], inner + leaves[4], leaves[2]]).sum()
    order = tinyad.graph.topological_order(out)
    assert order[-1] is out
    assert_parents_come_first(order)
    assert sorted(map(id, order)) == sorted(_reachable(out))


def test_topological_order_of_a_leaf_is_the_leaf():
    x = Value(1.0)
    assert tinyad.graph.topological_order(x) == [x]


def test_backward_does_not_touch_nodes_outside_the_root_graph():
    x = Value(0.5)
    used = x.tanh()
    unused = x.exp()
    used.backward()
    assert unused.grad == 0.0 and unused.messages is None


# --------------------------------------------------------------------------
# Accumulation like PyTorch
# --------------------------------------------------------------------------


def _tinyad_graph(x0, y0):
    x, y = Value(x0), Value(y0)
    h = x * y + x.tanh()
    out = h.sigmoid() * h
    return x, y, h, out


def _torch_graph(x0, y0):
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(y0, dtype=torch.float64, requires_grad=True)
    h = x * y + x.tanh()
    h.retain_grad()
    out = h.sigmoid() * h
    out.retain_grad()
    return x, y, h, out


def test_backward_twice_doubles_leaf_and_intermediate_grads_like_torch():
    nodes = _tinyad_graph(1.3, -0.7)
    nodes[-1].backward()
    nodes[-1].backward()
    expected = _torch_graph(1.3, -0.7)
    expected[-1].backward(retain_graph=True)
    expected[-1].backward()
    for name, got, want in zip("x y h out".split(), nodes, expected):
        assert close(got.grad, want.grad.item(), 1e-12, 0.0), name
    assert nodes[-1].grad == 2.0


def test_second_backward_adds_exactly_the_first_pass_gradient():
    x, y, h, out = _tinyad_graph(0.4, 2.2)
    out.backward()
    once = [x.grad, y.grad, h.grad]
    out.backward()
    assert [x.grad, y.grad, h.grad] == [2 * g for g in once]


def test_zero_grad_on_a_node_resets_only_that_node():
    x, y, h, out = _tinyad_graph(0.4, 2.2)
    out.backward()
    y_grad = y.grad
    h.zero_grad()
    assert h.grad == 0.0 and h.messages is None
    assert y.grad == y_grad and x.grad != 0.0 and out.grad == 1.0


def test_module_zero_grad_resets_every_node_so_next_backward_matches_torch():
    x, y, h, out = _tinyad_graph(-0.9, 0.6)
    out.backward()
    out.backward()
    tinyad.zero_grad(out)
    for node in tinyad.graph.topological_order(out):
        assert node.grad == 0.0 and node.messages is None
    out.backward()
    expected = _torch_graph(-0.9, 0.6)
    expected[-1].backward()
    for got, want in zip((x, y, h, out), expected):
        assert close(got.grad, want.grad.item(), 1e-12, 0.0)


def test_gradient_does_not_flow_into_node_that_does_not_require_grad():
    x = tinyad.Tensor([1.5], requires_grad=True)
    c = tinyad.Tensor([3.0], requires_grad=True)
    c.requires_grad = False
    product = x * c
    product.backward(np.ones(1))
    assert c.grad is None
    assert product.messages[1] is None
    np.testing.assert_array_equal(x.grad, [3.0])


def test_every_value_requires_grad_and_cannot_opt_out():
    # requires_grad is a class attribute (graph.Node's), not a slot per node
    x = Value(1.5)
    assert x.requires_grad is True and (x * x).requires_grad is True
    with pytest.raises(AttributeError):
        x.requires_grad = False
    (x * x).backward()  # the failed assignment changed nothing
    assert x.grad == 3.0


def test_a_graph_of_plain_nodes_backpropagates_with_a_hand_written_op():
    """The core needs no Value or Tensor: an op of one's own (here f(a, b) = a * b + a,
    df/da = b + 1, df/db = a) built from graph.Node gets its gradients and messages."""
    def product_plus_first_backward(node, upstream):
        a, b = node.parents
        return ((b.data + 1.0) * upstream, a.data * upstream)

    a, b = tinyad.graph.Node(3.0, label="a"), tinyad.graph.Node(-2.0, label="b")
    f = tinyad.graph.Node(3.0 * -2.0 + 3.0, (a, b), "a*b+a", product_plus_first_backward)
    tinyad.graph.run_backward(f, 1.0)
    assert (a.grad, b.grad, f.grad) == (-1.0, 3.0, 1.0)
    assert tinyad.graph.message(f, a) == -1.0 and tinyad.graph.message(f, b) == 3.0


def test_backward_that_raises_leaves_no_stale_gradient_for_the_next_pass(monkeypatch):
    def broken(node, upstream):
        raise RuntimeError("broken backward")

    x = Value(0.8)
    with monkeypatch.context() as patch:
        patch.setattr(Value, "_tanh_backward", staticmethod(broken))
        out = (x * x).tanh() + x  # x receives a message before tanh's backward runs
        with pytest.raises(RuntimeError, match="broken backward"):
            out.backward()
    assert x.grad == 0.0
    (x * 3.0).backward()
    assert x.grad == 3.0


def test_a_failed_backward_changes_no_gradient_or_message_anywhere():
    def broken(node, upstream):
        raise RuntimeError("broken backward")

    x, y = Value(0.8), Value(-0.3)
    squashed = (x * y).tanh()
    first = squashed + x
    first.backward()
    before = [(node.grad, node.messages) for node in tinyad.graph.topological_order(first)]
    squashed.backward_fn = broken
    with pytest.raises(RuntimeError, match="broken backward"):
        first.backward()  # x and + receive messages before tanh's backward raises
    after = [(node.grad, node.messages) for node in tinyad.graph.topological_order(first)]
    assert after == before


def test_an_interrupted_tensor_pass_leaves_every_grad_as_it_was():
    a = tinyad.tensor([1.0, 2.0], requires_grad=True)
    b = tinyad.tensor([3.0, -1.0], requires_grad=True)
    grown = (a * b).exp()
    out = (grown + a).sum()

    def interrupted(node, upstream):
        raise KeyboardInterrupt  # as if the learner pressed Ctrl-C here

    real, grown.backward_fn = grown.backward_fn, interrupted
    with pytest.raises(KeyboardInterrupt):
        out.backward()
    assert a.grad is None and b.grad is None and out.grad is None
    grown.backward_fn = real
    out.backward()  # a retry gives the right number, not one on top of a partial one
    ta = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    tb = torch.tensor([3.0, -1.0], dtype=torch.float64, requires_grad=True)
    ((ta * tb).exp() + ta).sum().backward()
    np.testing.assert_allclose(a.grad, ta.grad.numpy(), rtol=1e-15)
    np.testing.assert_allclose(b.grad, tb.grad.numpy(), rtol=1e-15)


def test_a_graph_can_be_read_while_a_backward_pass_runs_over_it():
    # drawing or listing a graph from inside a pass (a hook, a debugger, another thread)
    x, y = Value(0.4), Value(-1.3)
    out = _build_every_op(x, y)
    seen = []

    def reading(real):
        def backward_fn(node, upstream):
            seen.append(len(tinyad.edges(out)))
            tinyad.find(out, "")  # a search of its own, in the middle of the pass
            return real(node, upstream)
        return backward_fn

    for node in tinyad.graph.topological_order(out):
        if node.parents:
            node.backward_fn = reading(node.backward_fn)
    expected_x, expected_y = _grads_of_every_op()
    out.backward()
    assert seen and seen[0] == len(tinyad.edges(out))
    assert (x.grad, y.grad) == (expected_x, expected_y)


def _grads_of_every_op():
    x, y = Value(0.4), Value(-1.3)
    _build_every_op(x, y).backward()
    return x.grad, y.grad


# --------------------------------------------------------------------------
# no_grad / enable_grad
# --------------------------------------------------------------------------


def test_no_grad_records_no_parents_and_no_op():
    x = Value(2.0)
    with tinyad.no_grad():
        assert not tinyad.is_grad_enabled()
        y = (x * 3.0).tanh() + x
    assert tinyad.is_grad_enabled()
    assert y.parents == () and y.op == "" and y.backward_fn is None
    assert y.data == math.tanh(6.0) + 2.0


def test_backward_through_a_no_grad_result_does_not_reach_its_inputs():
    x = Value(2.0)
    with tinyad.no_grad():
        frozen = x * 3.0
    (frozen * x).backward()
    assert frozen.grad == 2.0
    assert x.grad == 6.0  # only through the recorded edge, not through frozen


def test_nested_no_grad_stays_disabled_until_the_outer_block_ends():
    with tinyad.no_grad():
        with tinyad.no_grad():
            assert not tinyad.is_grad_enabled()
        assert not tinyad.is_grad_enabled()
        y = Value(1.0) + 1.0
    assert tinyad.is_grad_enabled()
    assert y.parents == ()


def test_enable_grad_records_inside_no_grad_and_restores_no_grad():
    x = Value(1.5)
    with tinyad.no_grad():
        with tinyad.enable_grad():
            assert tinyad.is_grad_enabled()
            y = x * x
        assert not tinyad.is_grad_enabled()
        z = x * x
    assert y.parents == (x, x) and y.op == "*"
    assert z.parents == ()
    y.backward()
    assert x.grad == 3.0


def test_no_grad_is_restored_after_an_exception_inside_the_block():
    with pytest.raises(ValueError):
        with tinyad.no_grad():
            Value(-1.0).log()
    assert tinyad.is_grad_enabled()
    assert (Value(1.0) + 1.0).parents != ()


def test_enable_grad_is_restored_to_disabled_after_an_exception_inside_it():
    with tinyad.no_grad():
        with pytest.raises(ValueError):
            with tinyad.enable_grad():
                Value(0.0).log()
        assert not tinyad.is_grad_enabled()
    assert tinyad.is_grad_enabled()


# --------------------------------------------------------------------------
# Per-edge gradient messages
# --------------------------------------------------------------------------


def incoming_totals(root):
    """For each node, the sum of the messages arriving from all its consumers."""
    totals = {}
    for parent, consumer, message in tinyad.edges(root):
        assert message is not None, f"no message on an edge into {consumer!r}"
        totals[id(parent)] = totals.get(id(parent), 0.0) + message
    return totals


def assert_messages_sum_to_grad(root, rel=1e-12, abs_=1e-12):
    totals = incoming_totals(root)
    for node in tinyad.graph.topological_order(root):
        if node is root:
            assert id(node) not in totals
            continue
        assert close(totals[id(node)], node.grad, rel, abs_), (
            f"{node!r}: messages sum to {totals[id(node)]!r}"
        )


def test_message_is_exported_at_package_level():
    assert tinyad.message is tinyad.graph.message
    assert tinyad.edges is tinyad.graph.edges


def test_product_sends_each_factor_the_other_factor_times_upstream():
    x, y = Value(2.0), Value(-5.0)
    z = x * y
    out = z.tanh()
    out.backward()
    upstream = 1.0 - math.tanh(-10.0) ** 2
    assert close(z.grad, upstream, 1e-12, 0.0)
    assert tinyad.message(z, x) == y.data * z.grad
    assert tinyad.message(z, y) == x.data * z.grad


def test_square_message_sums_both_edges_to_two_x():
    x = Value(3.0)
    z = x * x
    z.backward()
    assert tinyad.message(z, x) == 6.0
    into_x = [m for p, c, m in tinyad.edges(z) if p is x and c is z]
    assert into_x == [3.0, 3.0]


def test_edges_list_every_edge_with_none_before_backward():
    x, y = Value(1.0), Value(2.0)
    z = x * y + x
    found = tinyad.edges(z)
    assert len(found) == 4  # x->*, y->*, *->+, x->+
    assert all(message is None for _, _, message in found)


def test_message_before_backward_raises_value_error():
    x, y = Value(1.0), Value(2.0)
    z = x * y
    with pytest.raises(ValueError, match="backward"):
        tinyad.message(z, x)


def test_message_for_a_non_edge_raises_value_error():
    x, y = Value(1.0), Value(2.0)
    z = x * y
    w = z + 1.0
    w.backward()
    with pytest.raises(ValueError, match="not an input"):
        tinyad.message(w, x)  # x reaches w only through z
    with pytest.raises(ValueError, match="not an input"):
        tinyad.message(x, z)  # wrong direction


def test_messages_accumulate_across_two_backward_calls_like_grad():
    x, y = Value(0.7), Value(-1.3)
    z = x * y
    out = z.exp() + z
    out.backward()
    once = tinyad.message(z, x)
    out.backward()
    assert tinyad.message(z, x) == 2 * once
    assert_messages_sum_to_grad(out)


def test_messages_arriving_at_each_node_sum_to_its_grad():
    x, y = Value(0.3), Value(-0.8)
    h = (x * y).tanh()
    out = h * h + h.sigmoid() * x - y / (h + 2.0)
    out.backward()
    assert_messages_sum_to_grad(out)


def test_messages_sum_to_grad_with_a_seed():
    x = Value(1.1)
    out = x.exp() * x + x
    out.backward(-3.0)
    assert_messages_sum_to_grad(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions())
def test_random_expression_messages_arriving_at_each_node_sum_to_its_grad(expr: Expression):
    leaves = [Value(x) for x in expr.inputs]
    out = expr(*leaves)
    out.backward()
    assert_messages_sum_to_grad(out, rel=1e-9, abs_=1e-9)
    # and the leaves' grads are torch's
    _, expected = run_torch(expr, *expr.inputs)
    for leaf, want in zip(leaves, expected):
        assert close(leaf.grad, want, 1e-9, 1e-9)


# --------------------------------------------------------------------------
# No reference cycles: reference counting alone frees a graph
# --------------------------------------------------------------------------


def _build_every_op(x, y):
    a = (x * y + x - y) / (y * y + 1.0)
    b = a.tanh() + a.sigmoid() + a.relu() + a.abs() + (-a)
    c = (b * b + 1.0).sqrt().log() + b.exp() + (x * x + 1.0) ** 1.5
    d = (x.sigmoid() + 0.5) ** y + 2.0 ** x + 2 - x + 3 * y + 1 / (y * y + 1.0)
    return (c * d + abs(c)) * 0.5


def test_a_scalar_graph_pickles_and_its_copy_runs_backward():
    x, y = Value(0.4), Value(-1.3)
    out = _build_every_op(x, y)
    copy = pickle.loads(pickle.dumps(out))
    copy.backward()
    out.backward()
    originals = tinyad.graph.topological_order(out)
    copies = tinyad.graph.topological_order(copy)
    assert [node.op for node in copies] == [node.op for node in originals]
    assert [node.grad for node in copies] == [node.grad for node in originals]


@pytest.mark.parametrize("run_backward", [False, True], ids=["built", "after_backward"])
def test_graph_is_freed_by_reference_counting_alone(run_backward):
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        x, y = Value(0.4), Value(-1.3)
        out = _build_every_op(x, y)
        if run_backward:
            out.backward()
        nodes = tinyad.graph.topological_order(out)
        refs = [weakref.ref(node) for node in nodes]
        assert len(refs) > 40
        del nodes, out, x, y
        alive = [ref() for ref in refs if ref() is not None]
        assert alive == [], f"{len(alive)} nodes kept alive by reference cycles"
    finally:
        if was_enabled:
            gc.enable()


# --------------------------------------------------------------------------
# How a node stores its parents
# --------------------------------------------------------------------------


def test_parents_keep_argument_order_for_one_two_and_many_inputs():
    x, y = Value(2.0), Value(3.0)
    assert (-x).parents == (x,)
    assert (x - y).parents == (x, y) and (y - x).parents == (y, x)
    assert x.parents == ()
    a, b, c = (tinyad.tensor([float(i)], requires_grad=True) for i in range(3))
    joined = tinyad.concatenate([a, b, c, a])
    assert joined.parents == (a, b, c, a)
    # a arrives through the first and the fourth input: both messages count
    (joined * tinyad.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert a.grad.tolist() == [5.0] and b.grad.tolist() == [2.0] and c.grad.tolist() == [3.0]
    assert [m.tolist() for m in joined.messages] == [[1.0], [2.0], [3.0], [4.0]]


def test_topological_order_reaches_parents_beyond_the_second():
    a, b, c, d = (tinyad.tensor([float(i)], requires_grad=True, label=f"t{i}") for i in range(4))
    # d is reachable only through the fourth input of the concatenation
    out = tinyad.concatenate([a * 2.0, b, c, d * 3.0]).sum()
    order = tinyad.graph.topological_order(out)
    for node in (a, b, c, d):
        assert node in order
    assert_parents_come_first(order)
    out.backward()
    assert d.grad.tolist() == [3.0] and c.grad.tolist() == [1.0]
