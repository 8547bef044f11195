"""Values, Tensors, their graphs and Modules survive pickle and copy.deepcopy.

What comes back is the same graph (operations, labels, data, gradients, and
which node feeds which), a backward pass through it gives the gradients the
original gives (and torch gives), shared nodes stay shared, a Tensor's backend
is this machine's backend of the same device, and graphs far deeper than
Python's recursion limit go through.
"""
from __future__ import annotations

import copy
import pickle
import sys

import numpy as np
import pytest
import torch

import tinyad
from tinyad import Tensor, Value, graph, nn, optim
from tinyad.backend import get_backend
from tinyad.nn import functional as F

from nn_oracle import assert_close, torch_leaf

PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))


def pickled(obj, protocol: int = pickle.DEFAULT_PROTOCOL):
    return pickle.loads(pickle.dumps(obj, protocol=protocol))


COPIERS = {"pickle": pickled, "deepcopy": copy.deepcopy}


def structure(root) -> list[tuple]:
    """The graph under ``root`` as plain data: per node in topological order its op,
    label, and the positions of its parents in that order."""
    order = graph.topological_order(root)
    position = {id(node): index for index, node in enumerate(order)}
    return [(node.op, node.label, tuple(position[id(parent)] for parent in node.parents)) for node in order]


def assert_same_graph(copied, original) -> None:
    """Same structure, and every node's data and gradient equal (as numbers, not as objects)."""
    assert structure(copied) == structure(original)
    pairs = zip(graph.topological_order(copied), graph.topological_order(original))
    for index, (ours, theirs) in enumerate(pairs):
        assert ours is not theirs, f"node {index} was not copied"
        assert type(ours) is type(theirs)
        np.testing.assert_array_equal(ours.data, theirs.data, err_msg=f"data of node {index} ({theirs.op})")
        if theirs.grad is None:
            assert ours.grad is None
        else:
            np.testing.assert_array_equal(ours.grad, theirs.grad, err_msg=f"grad of node {index} ({theirs.op})")


# ---------------------------------------------------------------------------
# leaves
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_a_tensor_leaf_keeps_its_data_dtype_label_and_requires_grad(copier, dtype):
    leaf = Tensor(np.arange(6).reshape(2, 3), dtype=dtype, requires_grad=dtype != "int64", label="weight")
    back = copier(leaf)
    assert back is not leaf and back.dtype == leaf.dtype and back.shape == (2, 3)
    np.testing.assert_array_equal(back.numpy(), leaf.numpy())
    assert back.requires_grad == leaf.requires_grad and back.label == "weight" and back.grad is None


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
def test_a_tensor_keeps_its_gradient(copier):
    weight = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    (weight * weight).sum().backward()
    back = copier(weight)
    np.testing.assert_array_equal(back.grad, [2.0, -4.0, 6.0])


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
def test_a_copied_tensor_uses_this_machines_backend_of_its_device(copier):
    back = copier(Tensor([1.0, 2.0]))
    assert back.backend is get_backend("cpu")
    (back * Tensor([3.0, 4.0])).sum()  # ops compare backends with `is`: mixing works


def test_a_spy_tensor_comes_back_on_the_spy_backend(spy_device):
    back = pickled(Tensor([1.0, 2.0], device="spy", requires_grad=True))
    assert back.backend is spy_device and back.device == "spy"


def test_a_deep_copy_owns_its_data():
    weight = Tensor(np.ones(3), requires_grad=True)
    twin = copy.deepcopy(weight)
    twin.data += 1.0
    np.testing.assert_array_equal(weight.numpy(), np.ones(3))


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
def test_a_value_keeps_its_data_grad_and_label(copier):
    a = Value(2.5, label="a")
    (a * a).backward()
    back = copier(a)
    assert (back.data, back.grad, back.label) == (2.5, 5.0, "a")


# ---------------------------------------------------------------------------
# graphs
# ---------------------------------------------------------------------------


def tensor_program(x, w, b, lib):
    """A small program using many kinds of op: matmul, broadcasting, pow, reductions,
    indexing, exp/log/tanh, maximum, concatenate, where (``lib`` is tinyad or torch)."""
    h = (x @ w + b).tanh()
    scaled = h ** 2 * 0.5 + lib.maximum(h, h * 0.1)
    rows = scaled[1:, :]
    joined = lib.concatenate([rows, scaled[:1, :]], 0) if lib is tinyad else torch.cat([rows, scaled[:1, :]], 0)
    picked = lib.where(joined > 0.1, joined.exp(), (joined * joined + 1.0).log())
    return picked.mean() + picked.sum(1).max() / 3.0


def tensor_inputs(rng):
    return rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_tensor_graph_pickled_before_backward_gives_torch_gradients(protocol):
    arrays = tensor_inputs(np.random.default_rng(0))
    leaves = [Tensor(a, requires_grad=True) for a in arrays]
    loss = tensor_program(*leaves, tinyad)
    *leaves_back, loss_back = pickled([*leaves, loss], protocol)
    assert_same_graph(loss_back, loss)
    loss_back.backward()
    theirs = [torch_leaf(a) for a in arrays]
    tensor_program(*theirs, torch).backward()
    for name, ours, reference in zip("xwb", leaves_back, theirs):
        assert_close(ours.grad, reference.grad, 1e-12, what=name)
    assert all(leaf.grad is None for leaf in leaves), "the backward pass reached the original graph"


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
def test_a_tensor_graph_keeps_its_gradients_and_messages_after_backward(copier):
    leaves = [Tensor(a, requires_grad=True) for a in tensor_inputs(np.random.default_rng(1))]
    loss = tensor_program(*leaves, tinyad)
    loss.backward()
    back = copier(loss)
    assert_same_graph(back, loss)
    for (parent, consumer, sent), (parent_back, consumer_back, sent_back) in zip(tinyad.edges(loss), tinyad.edges(back)):
        if sent is None:
            assert sent_back is None
        else:
            np.testing.assert_array_equal(sent_back, sent, err_msg=f"message {parent.op} -> {consumer.op}")


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
def test_a_second_backward_through_a_copy_adds_to_the_copied_gradients_as_the_original_does(copier):
    leaves = [Tensor(a, requires_grad=True) for a in tensor_inputs(np.random.default_rng(2))]
    loss = tensor_program(*leaves, tinyad)
    loss.backward()
    leaves_back, loss_back = copier([leaves, loss])
    loss.backward()
    loss_back.backward()
    for ours, original in zip(leaves_back, leaves):
        np.testing.assert_array_equal(ours.grad, original.grad)


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
def test_nodes_shared_between_pickled_objects_stay_shared(copier):
    x = Value(1.5, label="x")
    hidden = (x * 2.0).tanh()
    hidden.label = "hidden"
    loss = hidden * hidden + x
    x_back, hidden_back, loss_back = copier([x, hidden, loss])
    assert tinyad.find(loss_back, "x") is x_back and tinyad.find(loss_back, "hidden") is hidden_back
    loss_back.backward()
    loss.backward()
    assert x_back.grad == x.grad and hidden_back.grad == hidden.grad


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_value_graph_round_trips_with_every_pickle_protocol(protocol):
    a, b = Value(0.7, label="a"), Value(-1.2, label="b")
    out = ((a * b + a ** 3).exp() - b.relu() / (a + 2.0)).tanh()
    out.backward()
    back = pickled(out, protocol)
    assert_same_graph(back, out)
    a_back = tinyad.find(back, "a")
    tinyad.zero_grad(back)
    back.backward()
    assert a_back.grad == a.grad


@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
def test_a_batchnorm_graph_pickled_before_backward_gives_torch_gradients(fused):
    rng = np.random.default_rng(3)
    x0, gamma0, beta0 = rng.normal(size=(6, 4)), rng.normal(size=4), rng.normal(size=4)
    x, gamma, beta = (Tensor(a, requires_grad=True) for a in (x0, gamma0, beta0))
    weights = rng.normal(size=(6, 4))
    loss = (F.batch_norm(x, None, None, gamma, beta, training=True, fused=fused) * Tensor(weights)).sum()
    *leaves, loss_back = pickled([x, gamma, beta, loss])
    loss_back.backward()
    theirs = [torch_leaf(a) for a in (x0, gamma0, beta0)]
    y = torch.nn.functional.batch_norm(theirs[0], None, None, theirs[1], theirs[2], training=True)
    (y * torch.from_numpy(weights)).sum().backward()
    for name, ours, reference in zip(["x", "gamma", "beta"], leaves, theirs):
        assert_close(ours.grad, reference.grad, 1e-10, what=name)


# ---------------------------------------------------------------------------
# deep graphs: no recursion
# ---------------------------------------------------------------------------


def value_chain(length: int) -> tuple[Value, Value]:
    """A leaf and the end of a chain of ``length`` one-input ops on it (length + 1 nodes)."""
    leaf = Value(0.5, label="leaf")
    node = leaf
    for step in range(length):
        node = node.relu() if step % 2 else node.tanh()
    return leaf, node


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
def test_a_value_chain_of_100000_nodes_pickles_and_deep_copies(copier):
    assert sys.getrecursionlimit() < 100_000  # the chain is far deeper than recursion could go
    leaf, end = value_chain(100_000)
    leaf_back, end_back = copier([leaf, end])
    assert end_back.data == end.data and end_back.op == end.op
    end_back.backward()
    end.backward()
    assert leaf_back.grad == leaf.grad != 0.0
    assert tinyad.find(end_back, "leaf") is leaf_back


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
def test_a_tensor_chain_deeper_than_the_recursion_limit_pickles_and_deep_copies(copier):
    depth = 2 * sys.getrecursionlimit()
    leaf = Tensor(np.array([0.3, -0.2]), requires_grad=True)
    node = leaf
    for _ in range(depth):
        node = (node * 0.999).tanh()
    leaf_back, end_back = copier([leaf, node.sum()])
    end_back.backward()
    node.sum().backward()
    np.testing.assert_array_equal(leaf_back.grad, leaf.grad)


def test_a_shallow_copy_does_not_stop_a_later_pickle_of_a_deep_chain():
    _, end = value_chain(3 * sys.getrecursionlimit())
    twin = copy.copy(end)  # shares the parents; a shallow copy never saves them
    assert twin.parents[0] is end.parents[0] and twin.data == end.data
    middle = end.parents[0].parents[0]
    assert pickled(middle).data == middle.data


def test_a_pickle_that_fails_halfway_does_not_stop_a_later_one():
    _, end = value_chain(3 * sys.getrecursionlimit())
    order = graph.topological_order(end)
    order[len(order) // 2].label = lambda: "a label that cannot be pickled"
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(end)
    order[len(order) // 2].label = "middle"
    assert pickled(order[-2]).data == order[-2].data


# ---------------------------------------------------------------------------
# modules and optimizers
# ---------------------------------------------------------------------------


def batchnorm_model(seed: int = 0) -> nn.Sequential:
    tinyad.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2), nn.BatchNorm1d(2, fused=True))


def trained(model: nn.Module, rng, steps: int = 3) -> nn.Module:
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        model(Tensor(rng.normal(size=(8, 4)))).sum().backward()
        opt.step()
    return model


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
def test_a_module_with_batchnorm_round_trips_with_its_parameters_and_running_statistics(copier):
    rng = np.random.default_rng(4)
    model = trained(batchnorm_model(), rng)
    back = copier(model)
    assert repr(back) == repr(model)
    for (name, ours), (_, original) in zip(back.state_dict().items(), model.state_dict().items()):
        assert ours.dtype == original.dtype
        np.testing.assert_array_equal(ours, original, err_msg=name)
    assert back.parameters()[0] is back[0].weight
    x = rng.normal(size=(8, 4))
    for mode in ("train", "eval"):
        getattr(model, mode)(), getattr(back, mode)()
        np.testing.assert_array_equal(back(Tensor(x)).numpy(), model(Tensor(x)).numpy(), err_msg=mode)
    np.testing.assert_array_equal(back[1].running_var.numpy(), model[1].running_var.numpy())
    # the copy's running statistics are still the ones its state reports: a training step moves both
    before = back[1].running_mean.numpy().copy()
    back.train()(Tensor(rng.normal(size=(8, 4)) + 3.0))
    assert not np.array_equal(back[1].running_mean.numpy(), before)
    np.testing.assert_array_equal(back.state_dict()["1.running_mean"], back[1].running_mean.numpy())


def test_a_copied_module_trains_on_its_own_parameters():
    rng = np.random.default_rng(5)
    model = trained(batchnorm_model(), rng)
    before = model.state_dict()
    back = copy.deepcopy(model)
    trained(back, rng)
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(array, before[name], err_msg=f"{name} of the original changed")
    assert not np.array_equal(back[0].weight.numpy(), model[0].weight.numpy())


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
def test_a_model_and_its_optimizer_copied_together_still_share_the_parameters(copier):
    rng = np.random.default_rng(6)
    model = batchnorm_model()
    opt = optim.Adam(model.parameters(), lr=0.01)
    x = Tensor(rng.normal(size=(8, 4)))
    model(x).sum().backward()
    opt.step()
    model_back, opt_back = copier((model, opt))
    assert all(ours is param for ours, param in zip(opt_back.params, model_back.parameters()))
    for any_model, any_optimizer in ((model, opt), (model_back, opt_back)):  # a second step, with Adam's state
        any_optimizer.zero_grad()
        any_model(x).sum().backward()
        any_optimizer.step()
    for (name, ours), (_, theirs) in zip(model_back.state_dict().items(), model.state_dict().items()):
        np.testing.assert_array_equal(ours, theirs, err_msg=name)


def test_a_cuda_tensor_graph_comes_back_on_the_gpu(cuda_device):
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True, device=cuda_device)
    x_back, loss_back = pickled([x, (x * x * 3.0).sum()])
    assert x_back.backend is get_backend(cuda_device) and isinstance(x_back.data, x_back.backend.array_type)
    loss_back.backward()
    np.testing.assert_array_equal(x_back.backend.to_numpy(x_back.grad), [6.0, -12.0])
