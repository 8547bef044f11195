"""SGD and Adam against torch.optim.SGD / torch.optim.Adam, step by step (float64)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyad import Tensor, Value, nn, optim
from tinyad.nn import functional as F

from nn_oracle import assert_close, tinyad_leaf, torch_leaf

STEPS = 10


def regression_problem(seed: int = 0):
    """A small linear regression: X (12, 3), Y (12, 2), starting W (2, 3) and b (2,)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(12, 3))
    y = x @ rng.normal(size=(3, 2)) + rng.normal(size=2) + 0.1 * rng.normal(size=(12, 2))
    return x, y, rng.normal(size=(2, 3)), rng.normal(size=2)


def trajectories(make_ours, make_theirs, steps: int = STEPS, seed: int = 0):
    """Run both optimizers on the regression problem; yield parameters after every step."""
    x, y, w0, b0 = regression_problem(seed)
    w, b = tinyad_leaf(w0), tinyad_leaf(b0)
    tw, tb = torch_leaf(w0), torch_leaf(b0)
    ours, theirs = make_ours([w, b]), make_theirs([tw, tb])
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    for step in range(steps):
        ours.zero_grad()
        F.mse_loss(Tensor(x) @ w.T + b, Tensor(y)).backward()
        ours.step()
        theirs.zero_grad()
        torch.nn.functional.mse_loss(tx @ tw.T + tb, ty).backward()
        theirs.step()
        yield step, (w, b), (tw, tb)


def assert_same_trajectory(make_ours, make_theirs, rtol: float = 1e-10):
    for step, (w, b), (tw, tb) in trajectories(make_ours, make_theirs):
        assert_close(w, tw, rtol, 1e-13, f"W after step {step + 1}")
        assert_close(b, tb, rtol, 1e-13, f"b after step {step + 1}")
    w0 = regression_problem()[2]
    assert not np.allclose(w.numpy(), w0, rtol=1e-3), "the parameters did not move: the comparison proves nothing"


SGD_CONFIGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "momentum-dampening": dict(lr=0.05, momentum=0.9, dampening=0.3),
    "nesterov": dict(lr=0.05, momentum=0.8, nesterov=True),
    "weight-decay": dict(lr=0.1, weight_decay=0.2),
    "everything": dict(lr=0.05, momentum=0.7, weight_decay=0.1, nesterov=True),
    "momentum-dampening-decay": dict(lr=0.05, momentum=0.5, dampening=0.5, weight_decay=0.05),
}


@pytest.mark.parametrize("config", SGD_CONFIGS.values(), ids=SGD_CONFIGS.keys())
def test_sgd_trajectory_matches_torch(config):
    assert_same_trajectory(lambda p: optim.SGD(p, **config), lambda p: torch.optim.SGD(p, **config))


ADAM_CONFIGS = {
    "default": dict(lr=0.1),
    "weight-decay": dict(lr=0.1, weight_decay=0.3),
    "betas-eps": dict(lr=0.05, betas=(0.5, 0.9), eps=1e-3),
    "small-lr": dict(lr=1e-3),
}


@pytest.mark.parametrize("config", ADAM_CONFIGS.values(), ids=ADAM_CONFIGS.keys())
def test_adam_trajectory_matches_torch(config):
    assert_same_trajectory(lambda p: optim.Adam(p, **config), lambda p: torch.optim.Adam(p, **config))


def test_sgd_first_momentum_step_is_a_plain_gradient_step():
    # buf = g on the first step (no (1 - dampening) factor), as in torch
    p = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    p.grad = np.array([0.5, 4.0])
    optim.SGD([p], lr=0.1, momentum=0.9, dampening=0.5).step()
    np.testing.assert_allclose(p.numpy(), [1.0 - 0.05, -2.0 - 0.4], rtol=1e-15)


def test_adam_first_step_moves_every_coordinate_by_about_lr():
    # bias correction makes the first update lr * g / (|g| + eps') = lr * sign(g)
    p = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    p.grad = np.array([1e-3, -50.0, 7.0])
    optim.Adam([p], lr=0.01).step()
    np.testing.assert_allclose(p.numpy(), [0.99, -1.99, 2.99], rtol=1e-6)


def assert_late_joining_parameter_matches_torch(make_ours, make_theirs):
    """Parameter b gets no gradient on the first two steps (it is not in the loss yet)."""
    a, b = Tensor(np.array([1.0, 2.0]), requires_grad=True), Tensor(np.array([3.0]), requires_grad=True)
    ta, tb = torch_leaf(np.array([1.0, 2.0])), torch_leaf(np.array([3.0]))
    ours, theirs = make_ours([a, b]), make_theirs([ta, tb])
    for step in range(4):
        ours.zero_grad()
        theirs.zero_grad()
        (a * a).sum().backward()
        (ta * ta).sum().backward()
        if step >= 2:  # b joins the loss only from the third step on
            (b * b * b).sum().backward()
            (tb * tb * tb).sum().backward()
        ours.step()
        theirs.step()
        assert_close(a, ta, 1e-12, what=f"a after step {step + 1}")
        assert_close(b, tb, 1e-12, what=f"b after step {step + 1}")
    assert b.numpy()[0] != 3.0


def test_sgd_skips_parameters_without_gradient_like_torch():
    assert_late_joining_parameter_matches_torch(
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)
    )


def test_adam_bias_correction_counts_steps_per_parameter_like_torch():
    # torch keeps state["step"] per parameter: a parameter first updated on the
    # third call gets the bias correction of a first step, 1 - beta^1
    assert_late_joining_parameter_matches_torch(lambda p: optim.Adam(p, lr=0.1), lambda p: torch.optim.Adam(p, lr=0.1))


def test_zero_grad_sets_gradients_to_none():
    p = Tensor(np.ones(3), requires_grad=True)
    (p * p).sum().backward()
    opt = optim.Adam([p])
    opt.zero_grad()
    assert p.grad is None


def test_optimizer_step_does_not_write_into_the_callers_array():
    initial = np.array([1.0, 2.0])
    p = Tensor(initial, requires_grad=True)
    (p * p).sum().backward()
    optim.SGD([p], lr=0.1).step()
    np.testing.assert_array_equal(initial, [1.0, 2.0])
    np.testing.assert_allclose(p.numpy(), [0.8, 1.6], rtol=1e-15)


def test_optimizers_update_module_parameters_in_place():
    layer = nn.Linear(3, 2)
    weight = layer.weight
    before = weight.numpy().copy()
    layer(Tensor(np.ones((4, 3)))).sum().backward()
    optim.SGD(layer.parameters(), lr=0.5).step()
    assert layer.weight is weight
    np.testing.assert_allclose(weight.numpy(), before - 0.5 * 4.0, rtol=1e-14)  # d sum / dW = 4 everywhere


def test_optimizers_reject_an_empty_parameter_list():
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])


def test_sgd_rejects_negative_learning_rate_and_bad_nesterov_settings_like_torch():
    p = [Tensor(np.ones(1), requires_grad=True)]
    tp = [torch_leaf(np.ones(1))]
    for kwargs in (dict(lr=-0.1), dict(lr=0.1, nesterov=True), dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)):
        with pytest.raises(ValueError):
            optim.SGD(p, **kwargs)
        with pytest.raises(ValueError):
            torch.optim.SGD(tp, **kwargs)


# ---------------------------------------------------------------------------
# parameters over Values: the same rules on floats
# ---------------------------------------------------------------------------


def value_trajectories(make_ours, make_theirs, steps: int = STEPS):
    """Minimise (a * b - 3)^2 + a^2 / 10 over two scalars, in tinyad Values and torch 0-d tensors."""
    a, b = Value(0.5), Value(-1.5)
    ta, tb = torch_leaf(np.array(0.5)), torch_leaf(np.array(-1.5))
    ours, theirs = make_ours([a, b]), make_theirs([ta, tb])
    for step in range(steps):
        ours.zero_grad()
        ((a * b - 3.0) ** 2 + a * a * 0.1).backward()
        ours.step()
        theirs.zero_grad()
        ((ta * tb - 3.0) ** 2 + ta * ta * 0.1).backward()
        theirs.step()
        yield step, (a, b), (ta, tb)


VALUE_CONFIGS = {
    "sgd-momentum": ("SGD", dict(lr=0.02, momentum=0.9)),
    "sgd-nesterov-decay": ("SGD", dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.1)),
    "sgd-dampening": ("SGD", dict(lr=0.02, momentum=0.5, dampening=0.3)),
    "adam": ("Adam", dict(lr=0.1, weight_decay=0.05)),
}


@pytest.mark.parametrize("name, config", VALUE_CONFIGS.values(), ids=VALUE_CONFIGS.keys())
def test_optimizers_over_values_follow_torch_on_zero_dimensional_tensors(name, config):
    ours, theirs = getattr(optim, name), getattr(torch.optim, name)
    for step, (a, b), (ta, tb) in value_trajectories(lambda p: ours(p, **config), lambda p: theirs(p, **config)):
        assert type(a.data) is float and type(b.data) is float
        np.testing.assert_allclose([a.data, b.data], [ta.item(), tb.item()], rtol=1e-12, err_msg=f"step {step + 1}")
    assert a.data != 0.5, "the parameters did not move: the comparison proves nothing"


def test_zero_grad_over_values_sets_their_gradients_to_zero():
    a = Value(2.0)
    (a * a).backward()
    opt = optim.SGD([a], lr=0.1, momentum=0.9)
    opt.zero_grad()
    assert a.grad == 0.0


# ---------------------------------------------------------------------------
# what the constructors refuse, as torch.optim refuses it
# ---------------------------------------------------------------------------


def refusal(make) -> type | None:
    """The exception class ``make()`` raises, or None."""
    try:
        make()
    except Exception as error:  # noqa: BLE001 - the type is what is compared
        return type(error)
    return None


def test_a_single_tensor_instead_of_a_list_is_a_type_error_like_torch():
    weight = Tensor(np.ones((3, 2)), requires_grad=True)
    assert refusal(lambda: torch.optim.SGD(torch_leaf(np.ones((3, 2))), lr=0.1)) is TypeError
    with pytest.raises(TypeError, match=r"single Tensor.*\[param\]"):
        optim.SGD(weight, lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.Adam(weight)


def test_a_single_value_instead_of_a_list_is_a_type_error():
    with pytest.raises(TypeError, match="single Value"):
        optim.SGD(Value(1.0), lr=0.1)


@pytest.mark.parametrize("param", [1.0, np.ones(3), "weight"], ids=["float", "ndarray", "str"])
def test_parameters_that_are_neither_tensors_nor_values_are_a_type_error_like_torch(param):
    assert refusal(lambda: torch.optim.SGD([param], lr=0.1)) is TypeError
    with pytest.raises(TypeError, match=f"parameter 0 is a {type(param).__name__}"):
        optim.SGD([param], lr=0.1)


def test_something_that_is_not_iterable_is_a_type_error():
    with pytest.raises(TypeError, match="iterable of Tensors or Values, got int"):
        optim.SGD(3, lr=0.1)


def test_a_non_leaf_tensor_is_refused_like_torch():
    weight = Tensor(np.ones(3), requires_grad=True)
    assert refusal(lambda: torch.optim.SGD([torch_leaf(np.ones(3)) * 2], lr=0.1)) is ValueError
    with pytest.raises(ValueError, match=r"parameter 1 is not a leaf.*'\*'"):
        optim.SGD([weight, weight * 2], lr=0.1)


def test_a_non_leaf_value_is_refused():
    a = Value(1.0)
    with pytest.raises(ValueError, match="parameter 0 is not a leaf"):
        optim.Adam([a + 1.0])


def test_a_detached_tensor_is_a_leaf_and_accepted():
    weight = Tensor(np.ones(3), requires_grad=True)
    optim.SGD([(weight * 2).detach()], lr=0.1)


BAD_HYPERPARAMETERS = {
    "sgd-negative-lr": ("SGD", dict(lr=-0.1), "lr must be >= 0, got -0.1"),
    "sgd-negative-momentum": ("SGD", dict(lr=0.1, momentum=-0.5), "momentum must be >= 0, got -0.5"),
    "sgd-negative-weight-decay": ("SGD", dict(lr=0.1, weight_decay=-1e-4), "weight_decay must be >= 0"),
    "adam-negative-lr": ("Adam", dict(lr=-1e-3), "lr must be >= 0"),
    "adam-negative-eps": ("Adam", dict(eps=-1e-8), "eps must be >= 0, got -1e-08"),
    "adam-negative-weight-decay": ("Adam", dict(weight_decay=-0.1), "weight_decay must be >= 0"),
    "adam-beta1-one": ("Adam", dict(betas=(1.0, 0.999)), r"betas\[0\] must lie in \[0, 1\), got 1.0"),
    "adam-beta2-one": ("Adam", dict(betas=(0.9, 1.0)), r"betas\[1\] must lie in \[0, 1\), got 1.0"),
    "adam-beta1-negative": ("Adam", dict(betas=(-0.1, 0.999)), r"betas\[0\]"),
    "adam-beta2-above-one": ("Adam", dict(betas=(0.9, 1.5)), r"betas\[1\]"),
}


@pytest.mark.parametrize("name, config, message", BAD_HYPERPARAMETERS.values(), ids=BAD_HYPERPARAMETERS.keys())
def test_hyperparameters_torch_refuses_are_a_value_error(name, config, message):
    assert refusal(lambda: getattr(torch.optim, name)([torch_leaf(np.ones(2))], **config)) is ValueError
    with pytest.raises(ValueError, match=message):
        getattr(optim, name)([Tensor(np.ones(2), requires_grad=True)], **config)


EDGE_HYPERPARAMETERS = {
    "sgd-zero-lr": ("SGD", dict(lr=0.0)),
    "sgd-zero-momentum-and-decay": ("SGD", dict(lr=0.1, momentum=0.0, weight_decay=0.0)),
    "adam-zero-eps": ("Adam", dict(eps=0.0)),
    "adam-zero-betas": ("Adam", dict(betas=(0.0, 0.0))),
}


@pytest.mark.parametrize("name, config", EDGE_HYPERPARAMETERS.values(), ids=EDGE_HYPERPARAMETERS.keys())
def test_hyperparameters_on_the_edge_of_their_range_are_accepted_like_torch(name, config):
    assert refusal(lambda: getattr(torch.optim, name)([torch_leaf(np.ones(2))], **config)) is None
    getattr(optim, name)([Tensor(np.ones(2), requires_grad=True)], **config)
