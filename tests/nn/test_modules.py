"""The Module API and the simple layers and losses of tinyad.nn, against PyTorch."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyad
from tinyad import Tensor, nn
from tinyad.nn import functional as F

from nn_oracle import (
    assert_close,
    assert_runs_match,
    assert_same_buffers,
    randomize_affine,
    run_both,
    tinyad_leaf,
    torch_leaf,
    torch_twin,
)

FEW = settings(max_examples=15, deadline=None)


def mlp(seed: int = 0) -> nn.Sequential:
    tinyad.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3, bias=False), nn.Tanh())


def trained_a_little(model: nn.Module, rng: np.random.Generator, steps: int = 3) -> nn.Module:
    """Move the running statistics away from their defaults."""
    for _ in range(steps):
        model(Tensor(rng.normal(size=(6, 4)) * 2 + 1))
    return model


# ---------------------------------------------------------------------------
# parameters, buffers, names
# ---------------------------------------------------------------------------


def test_named_parameters_use_dotted_child_names_like_torch():
    model = mlp()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight"]
    assert names == [name for name, _ in torch_twin(model).named_parameters()]


def test_parameters_are_the_tensors_of_named_parameters_in_order():
    model = mlp()
    assert [id(p) for p in model.parameters()] == [id(p) for _, p in model.named_parameters()]
    assert model.parameters()[0] is model[0].weight and model.parameters()[-1] is model[3].weight
    assert all(p.requires_grad for p in model.parameters())


def test_buffers_are_not_parameters_and_are_named_like_torch():
    model = mlp()
    buffers = [name for name, _ in model.named_buffers()]
    assert buffers == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert buffers == [name for name, _ in torch_twin(model).named_buffers()]
    assert not any(b.requires_grad for _, b in model.named_buffers())
    assert not any(p is model[1].running_mean for p in model.parameters())


def test_linear_without_bias_registers_only_its_weight():
    layer = nn.Linear(3, 2, bias=False)
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    assert layer.bias is None


def test_sequential_supports_len_and_indexing():
    model = mlp()
    assert len(model) == 5
    assert isinstance(model[1], nn.BatchNorm1d) and isinstance(model[-1], nn.Tanh)


def test_repr_names_the_layers_and_their_sizes():
    text = repr(mlp())
    assert "Sequential(" in text and "(0): Linear(in_features=4, out_features=5, bias=True)" in text
    assert "(1): BatchNorm1d(5, eps=1e-05, momentum=0.1" in text


# ---------------------------------------------------------------------------
# train / eval / zero_grad
# ---------------------------------------------------------------------------


def test_eval_and_train_propagate_to_every_child_and_return_the_model():
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.BatchNorm1d(2), nn.ReLU()))
    assert model.eval() is model
    assert [m.training for m in model.modules()] == [False] * 5
    assert model.train() is model
    assert [m.training for m in model.modules()] == [True] * 5
    model.train(False)
    assert not model[1][0].training


def test_eval_flag_changes_batchnorm_behaviour_inside_a_sequential():
    rng = np.random.default_rng(0)
    model = trained_a_little(mlp(), rng)
    x = rng.normal(size=(6, 4))
    model.eval()
    twin = torch_twin(model)
    assert not twin.training
    assert_close(model(Tensor(x)), twin(torch.from_numpy(x)), 1e-10)
    model.train()
    assert not np.allclose(model(Tensor(x)).numpy(), twin(torch.from_numpy(x)).detach().numpy())


def test_zero_grad_sets_every_parameter_gradient_to_none():
    rng = np.random.default_rng(1)
    model = mlp()
    model(Tensor(rng.normal(size=(6, 4)))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_gradients_accumulate_until_zero_grad_like_torch():
    rng = np.random.default_rng(2)
    model = mlp()
    twin = torch_twin(model)
    x = rng.normal(size=(6, 4))
    for _ in range(2):
        model(Tensor(x)).sum().backward()
        twin(torch.from_numpy(x)).sum().backward()
    for (name, p), (_, q) in zip(model.named_parameters(), twin.named_parameters()):
        assert_close(p.grad, q.grad, 1e-10, what=name)


# ---------------------------------------------------------------------------
# state_dict / load_state_dict
# ---------------------------------------------------------------------------


def test_state_dict_holds_plain_numpy_copies_of_parameters_and_buffers():
    rng = np.random.default_rng(3)
    model = trained_a_little(mlp(), rng)
    state = model.state_dict()
    assert set(state) == {"0.weight", "0.bias", "1.weight", "1.bias", "3.weight",
                          "1.running_mean", "1.running_var", "1.num_batches_tracked"}
    assert all(type(v) is np.ndarray for v in state.values())
    assert state["1.num_batches_tracked"].shape == () and int(state["1.num_batches_tracked"]) == 3
    assert state["1.num_batches_tracked"].dtype.kind == "i"
    np.testing.assert_array_equal(state["1.running_mean"], model[1].running_mean.numpy())
    state["0.weight"][...] = 0.0  # a copy: the model keeps its weights
    assert np.abs(model[0].weight.numpy()).max() > 0


def test_state_dict_has_the_same_keys_and_values_as_torch_after_loading_into_torch():
    rng = np.random.default_rng(4)
    model = trained_a_little(mlp(), rng)
    twin = torch_twin(model)
    theirs = twin.state_dict()
    assert set(model.state_dict()) == set(theirs)
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(array, theirs[name].numpy(), err_msg=name)


def test_load_state_dict_round_trips_into_a_fresh_model_with_identical_outputs():
    rng = np.random.default_rng(5)
    model = trained_a_little(mlp(seed=1), rng)
    randomize_affine(model, rng)
    fresh = mlp(seed=2)
    x = rng.normal(size=(6, 4))
    assert not np.array_equal(fresh(Tensor(x)).numpy(), model(Tensor(x)).numpy())
    model.eval()
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    np.testing.assert_array_equal(fresh(Tensor(x)).numpy(), model(Tensor(x)).numpy())
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[name], array, err_msg=name)


def test_torch_state_dict_loads_into_tinyad_and_gives_torch_outputs():
    rng = np.random.default_rng(6)
    model = mlp()
    twin = torch_twin(model)
    with torch.no_grad():
        for _ in range(3):
            twin(torch.from_numpy(rng.normal(size=(6, 4)) * 3))
        for p in twin.parameters():
            p.add_(torch.from_numpy(rng.normal(size=tuple(p.shape))))
    model.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    model.eval()
    twin.eval()
    x = rng.normal(size=(5, 4))
    assert_close(model(Tensor(x)), twin(torch.from_numpy(x)), 1e-10)
    assert int(model[1].num_batches_tracked.numpy()) == 3


def test_load_state_dict_keeps_the_same_parameter_objects():
    model = mlp()
    weight = model[0].weight
    model.load_state_dict(mlp(seed=9).state_dict())
    assert model[0].weight is weight and model.parameters()[0] is weight


@pytest.mark.parametrize("change", ["missing", "unexpected"])
def test_load_state_dict_strict_key_mismatch_raises(change):
    model = mlp()
    state = model.state_dict()
    if change == "missing":
        del state["1.running_var"]
    else:
        state["5.weight"] = np.zeros(3)
    with pytest.raises(KeyError, match="1.running_var" if change == "missing" else "5.weight"):
        model.load_state_dict(state)


def test_load_state_dict_non_strict_loads_what_is_there():
    model, other = mlp(seed=0), mlp(seed=1)
    state = other.state_dict()
    del state["0.bias"]
    state["extra"] = np.ones(1)
    old_bias = model[0].bias.numpy().copy()
    model.load_state_dict(state, strict=False)
    np.testing.assert_array_equal(model[0].weight.numpy(), other[0].weight.numpy())
    np.testing.assert_array_equal(model[0].bias.numpy(), old_bias)


def test_load_state_dict_shape_mismatch_raises_and_names_the_key():
    model = mlp()
    state = model.state_dict()
    state["0.weight"] = np.zeros((4, 5))
    with pytest.raises(ValueError, match=r"0\.weight.*\(4, 5\).*\(5, 4\)"):
        model.load_state_dict(state)


def snapshot(model: nn.Module) -> dict:
    return {name: array.copy() for name, array in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = model.state_dict()
    for name, array in before.items():
        np.testing.assert_array_equal(after[name], array, err_msg=f"{name} changed although loading failed")
        assert after[name].dtype == array.dtype, name


# every bad entry sits in a key loaded after good ones ("0.weight" comes first), so a
# load that writes as it goes would already have changed the model when it fails
BAD_STATES = {
    "shape": ("3.weight", np.zeros((5, 3)), ValueError, r"3\.weight: shapes \(5, 3\) and \(3, 5\) differ \(the state's, the model's\)"),
    "text": ("3.weight", np.full((3, 5), "a"), TypeError, r"3\.weight has dtype <U1"),
    "complex": ("1.running_var", np.ones(5) + 1j, TypeError, r"1\.running_var has dtype complex128"),
    "objects": ("1.running_mean", np.array([None] * 5), TypeError, r"1\.running_mean has dtype object"),
    "ragged": ("1.bias", [[1.0], [1.0, 2.0]], TypeError, r"1\.bias is not an array of numbers"),
    "fractional-count": ("1.num_batches_tracked", np.array(2.5), ValueError, r"1\.num_batches_tracked must hold whole"),
    "nan-count": ("1.num_batches_tracked", np.array(np.nan), ValueError, r"1\.num_batches_tracked must hold whole"),
}


@pytest.mark.parametrize("key, bad, error, message", BAD_STATES.values(), ids=BAD_STATES.keys())
def test_load_state_dict_with_one_bad_entry_raises_naming_it_and_changes_nothing(key, bad, error, message):
    model = trained_a_little(mlp(seed=0), np.random.default_rng(0))
    before = snapshot(model)
    state = trained_a_little(mlp(seed=1), np.random.default_rng(1), steps=5).state_dict()
    state[key] = bad
    with pytest.raises(error, match=message):
        model.load_state_dict(state)
    assert_unchanged(model, before)


def test_load_state_dict_with_a_missing_key_changes_nothing():
    model = mlp(seed=0)
    before = snapshot(model)
    state = mlp(seed=1).state_dict()
    del state["3.weight"]
    with pytest.raises(KeyError, match="3.weight"):
        model.load_state_dict(state)
    assert_unchanged(model, before)


def test_load_state_dict_takes_a_whole_float_count_and_narrower_dtypes_like_torch():
    model, source = mlp(seed=0), trained_a_little(mlp(seed=1), np.random.default_rng(2))
    state = {name: array.astype(np.float32) if array.dtype == np.float64 else array
             for name, array in source.state_dict().items()}
    state["1.num_batches_tracked"] = np.array(3.0)
    twin = torch_twin(mlp(seed=2))
    twin.load_state_dict({name: torch.from_numpy(np.asarray(array)) for name, array in state.items()})
    model.load_state_dict(state)
    for name, array in model.state_dict().items():
        assert array.dtype == twin.state_dict()[name].numpy().dtype, name
        np.testing.assert_array_equal(array, twin.state_dict()[name].numpy(), err_msg=name)
    assert model[1].num_batches_tracked.numpy().dtype == np.int64 and int(model[1].num_batches_tracked.numpy()) == 3


@pytest.mark.parametrize("compressed", [False, True], ids=["savez", "savez_compressed"])
def test_state_dict_round_trips_through_numpy_savez_and_load(tmp_path, compressed):
    rng = np.random.default_rng(7)
    model = trained_a_little(mlp(seed=1), rng)
    randomize_affine(model, rng)
    path = tmp_path / "model.npz"
    (np.savez_compressed if compressed else np.savez)(path, **model.state_dict())
    fresh = mlp(seed=2)
    with np.load(path) as saved:
        fresh.load_state_dict(saved)
    for name, array in model.state_dict().items():
        loaded = fresh.state_dict()[name]
        assert loaded.dtype == array.dtype and loaded.shape == array.shape, name
        np.testing.assert_array_equal(loaded, array, err_msg=name)
    model.eval(), fresh.eval()
    x = rng.normal(size=(6, 4))
    np.testing.assert_array_equal(fresh(Tensor(x)).numpy(), model(Tensor(x)).numpy())


# ---------------------------------------------------------------------------
# BatchNorm's eps, checked as torch checks it
# ---------------------------------------------------------------------------


def torch_refusal(make) -> type | None:
    try:
        make()
    except Exception as error:  # noqa: BLE001 - the type is what is compared
        return type(error)
    return None


@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
@pytest.mark.parametrize("eps", [0.0, -1e-5])
def test_batchnorm_in_training_refuses_an_eps_that_is_not_positive_like_torch(eps, fused):
    x = np.random.default_rng(0).normal(size=(4, 3))
    assert torch_refusal(lambda: torch.nn.BatchNorm1d(3, eps=eps)(torch.from_numpy(x))) is ValueError
    layer = nn.BatchNorm1d(3, eps=eps, fused=fused)
    with pytest.raises(ValueError, match=f"eps must be > 0 when training, got {eps}"):
        layer(Tensor(x, requires_grad=True))


@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
def test_functional_batch_norm_with_batch_statistics_refuses_eps_zero_like_torch(fused):
    x = np.random.default_rng(0).normal(size=(4, 3))
    assert torch_refusal(lambda: TF.batch_norm(torch.from_numpy(x), None, None, training=True, eps=0.0)) is ValueError
    with pytest.raises(ValueError, match="eps must be > 0 when training"):
        F.batch_norm(Tensor(x), None, None, training=True, eps=0.0, fused=fused)


def test_batchnorm_without_running_statistics_refuses_eps_zero_in_eval_too_like_torch():
    # without running statistics eval() normalizes with the batch's own, so the training rule applies
    x = np.random.default_rng(0).normal(size=(4, 3))
    theirs = torch.nn.BatchNorm1d(3, eps=0.0, track_running_stats=False).eval()
    assert torch_refusal(lambda: theirs(torch.from_numpy(x))) is ValueError
    with pytest.raises(ValueError, match="eps must be > 0 when training"):
        nn.BatchNorm1d(3, eps=0.0, track_running_stats=False).eval()(Tensor(x))


def test_batchnorm_in_eval_takes_eps_zero_and_refuses_a_negative_one_like_torch():
    x = np.random.default_rng(0).normal(size=(4, 3))
    ours, theirs = nn.BatchNorm1d(3, eps=0.0).eval(), torch.nn.BatchNorm1d(3, eps=0.0).double().eval()
    assert_close(ours(Tensor(x)), theirs(torch.from_numpy(x)), 1e-12)
    assert torch_refusal(lambda: torch.nn.BatchNorm1d(3, eps=-1e-5).eval()(torch.from_numpy(x))) is ValueError
    with pytest.raises(ValueError, match="eps must be >= 0, got -1e-05"):
        nn.BatchNorm1d(3, eps=-1e-5).eval()(Tensor(x))


@pytest.mark.parametrize("refused", ["eps", "one-sample"])
def test_a_refused_batch_leaves_the_running_statistics_and_the_count_unchanged(refused):
    # torch counts the batch in num_batches_tracked before it refuses it; tinyad changes nothing
    rng = np.random.default_rng(0)
    layer = nn.BatchNorm1d(3, momentum=None)
    layer(Tensor(rng.normal(size=(4, 3))))
    before = snapshot(layer)
    if refused == "eps":
        layer.eps = 0.0
    x = rng.normal(size=(4, 3) if refused == "eps" else (1, 3))
    with pytest.raises(ValueError):
        layer(Tensor(x))
    assert_unchanged(layer, before)
    layer.eps = 1e-5
    layer(Tensor(rng.normal(size=(4, 3))))  # the next accepted batch is the second one counted
    assert int(layer.num_batches_tracked.numpy()) == 2


# ---------------------------------------------------------------------------
# Linear
# ---------------------------------------------------------------------------


def test_linear_default_init_stays_within_one_over_sqrt_fan_in():
    tinyad.manual_seed(0)
    layer = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    weight, bias = layer.weight.numpy(), layer.bias.numpy()
    assert np.abs(weight).max() <= bound and np.abs(bias).max() <= bound
    assert np.abs(weight).max() > 0.99 * bound  # the whole interval is used
    # U(-b, b) has standard deviation b / sqrt(3)
    assert weight.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert bias.std() == pytest.approx(bound / math.sqrt(3), rel=0.15)
    assert abs(weight.mean()) < 0.01 * bound
    # torch's default (kaiming_uniform with a=sqrt(5)) has the same bound
    torch.manual_seed(0)
    reference = torch.nn.Linear(400, 300).weight.detach().numpy()
    assert weight.std() == pytest.approx(reference.std(), rel=0.03)


def test_manual_seed_makes_initialization_reproducible():
    tinyad.manual_seed(123)
    first = nn.Linear(6, 4).weight.numpy()
    tinyad.manual_seed(123)
    second = nn.Linear(6, 4).weight.numpy()
    tinyad.manual_seed(124)
    third = nn.Linear(6, 4).weight.numpy()
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, third)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3)])
def test_linear_forward_and_gradients_equal_torch_functional_linear(bias, shape):
    rng = np.random.default_rng(7)
    layer = nn.Linear(3, 2, bias=bias)
    x, dy = rng.normal(size=shape), rng.normal(size=shape[:-1] + (2,))
    leaf = tinyad_leaf(x)
    (layer(leaf) * Tensor(dy)).sum().backward()
    tx, tw = torch_leaf(x), torch_leaf(layer.weight.numpy())
    tb = torch_leaf(layer.bias.numpy()) if bias else None
    ty = TF.linear(tx, tw, tb)
    (ty * torch.from_numpy(dy)).sum().backward()
    assert_close(layer(Tensor(x)), ty, 1e-12)
    assert_close(leaf.grad, tx.grad, 1e-12, what="dx")
    assert_close(layer.weight.grad, tw.grad, 1e-12, what="dweight")
    if bias:
        assert_close(layer.bias.grad, tb.grad, 1e-12, what="dbias")


def test_linear_rejects_the_wrong_number_of_features():
    with pytest.raises(ValueError, match=r"3 features.*\(2, 4\)"):
        nn.Linear(3, 2)(Tensor(np.zeros((2, 4))))


# ---------------------------------------------------------------------------
# activations, Flatten, Sequential
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ours, theirs",
    [(nn.ReLU(), torch.nn.ReLU()), (nn.Sigmoid(), torch.nn.Sigmoid()), (nn.Tanh(), torch.nn.Tanh())],
    ids=["ReLU", "Sigmoid", "Tanh"],
)
def test_activation_modules_match_torch(ours, theirs):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 3, 2)) * 3
    x[0, 0, 0] = 40.0  # saturating
    x[0, 0, 1] = -40.0
    dy = rng.normal(size=x.shape)
    assert_runs_match(run_both(ours, theirs, x, dy), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("fn, reference", [(F.relu, TF.relu), (F.sigmoid, torch.sigmoid), (F.tanh, torch.tanh)])
def test_activation_functions_match_torch(fn, reference):
    x = np.linspace(-6, 6, 13)
    assert_close(fn(Tensor(x)), reference(torch.from_numpy(x)), 1e-12)


@pytest.mark.parametrize("start_dim", [1, 2])
def test_flatten_matches_torch(start_dim):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 3, 4, 5))
    twin = torch.nn.Flatten(start_dim=start_dim)
    out_shape = tuple(twin(torch.from_numpy(x)).shape)
    dy = rng.normal(size=out_shape)
    results = run_both(nn.Flatten(start_dim), twin, x, dy)
    assert results["y"][0].shape == out_shape
    assert_runs_match(results, rtol=0, atol=0)


def test_sequential_train_steps_and_eval_match_torch():
    rng = np.random.default_rng(10)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Sigmoid(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)
    )
    randomize_affine(model, rng)
    twin = torch_twin(model)
    for step in range(3):
        x, dy = rng.normal(size=(7, 2, 3)), rng.normal(size=(7, 2))
        assert_runs_match(run_both(model, twin, x, dy), what=f"step {step}")
        assert_same_buffers(model, twin, what=f"step {step}")
    model.eval()
    twin.eval()
    assert_runs_match(run_both(model, twin, rng.normal(size=(3, 2, 3)), rng.normal(size=(3, 2))), what="eval")


def test_sequential_with_batchnorm2d_matches_torch():
    rng = np.random.default_rng(11)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(), nn.Linear(12, 2))
    randomize_affine(model, rng)
    twin = torch_twin(model)
    assert_runs_match(run_both(model, twin, rng.normal(size=(4, 3, 2, 2)), rng.normal(size=(4, 2))))
    assert_same_buffers(model, twin)


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------


def cross_entropy_both(logits, target):
    """The loss and its backward in tinyad and in torch: (loss, leaf, torch loss, torch leaf)."""
    leaf = tinyad_leaf(logits)
    loss = F.cross_entropy(leaf, target)
    loss.backward()
    torch_logits = torch_leaf(logits)
    expected = TF.cross_entropy(torch_logits, torch.from_numpy(target))
    expected.backward()
    return loss, leaf, expected, torch_logits


@FEW
@given(
    n=st.integers(1, 6),
    classes=st.integers(1, 5),
    scale=st.sampled_from([1e-3, 1.0, 30.0, 1000.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_cross_entropy_value_and_gradient_match_torch(n, classes, scale, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * scale
    target = rng.integers(0, classes, size=n)
    loss, leaf, expected, tl = cross_entropy_both(logits, target)
    assert np.isfinite(loss.item())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10, abs=1e-12)
    assert_close(leaf.grad, tl.grad, 1e-9, 1e-12, "dlogits")


def test_cross_entropy_with_huge_logits_does_not_overflow():
    logits = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 999.0]])
    target = np.array([1, 2])
    loss, leaf, expected, tl = cross_entropy_both(logits, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert_close(leaf.grad, tl.grad, 1e-12)


@pytest.mark.parametrize("as_type", ["list", "numpy", "tensor"])
def test_cross_entropy_accepts_targets_as_list_array_or_integer_tensor(as_type):
    logits = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, 0.0]])
    target = {"list": [2, 0], "numpy": np.array([2, 0]), "tensor": Tensor(np.array([2, 0]))}[as_type]
    expected = TF.cross_entropy(torch.from_numpy(logits), torch.tensor([2, 0])).item()
    assert F.cross_entropy(Tensor(logits), target).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "target, message",
    [
        (np.array([0, 3]), r"\[0, 2\].*3"),
        (np.array([-1, 0]), r"\[0, 2\].*-1"),
        (np.array([0.0, 1.0]), "integer"),
        (np.array([[0], [1]]), "shapes"),
        (np.array([0, 1, 2]), "shapes"),
    ],
    ids=["too-large", "negative", "float-dtype", "2-D", "too-many"],
)
def test_cross_entropy_rejects_bad_targets(target, message):
    with pytest.raises(ValueError, match=message):
        F.cross_entropy(Tensor(np.zeros((2, 3)), requires_grad=True), target)


def test_cross_entropy_rejects_logits_that_are_not_two_dimensional():
    with pytest.raises(ValueError, match=r"\(N, classes\)"):
        F.cross_entropy(Tensor(np.zeros(3)), np.array([0]))


@pytest.mark.parametrize("target_kind", ["array", "tensor", "tensor-with-grad"])
def test_mse_loss_value_and_gradients_match_torch(target_kind):
    rng = np.random.default_rng(12)
    prediction, target = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    leaf = tinyad_leaf(prediction)
    ours_target = {"array": target, "tensor": Tensor(target), "tensor-with-grad": tinyad_leaf(target)}[target_kind]
    loss = F.mse_loss(leaf, ours_target)
    loss.backward()
    tp, tt = torch_leaf(prediction), torch_leaf(target, requires_grad=target_kind == "tensor-with-grad")
    expected = TF.mse_loss(tp, tt)
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-13)
    assert_close(leaf.grad, tp.grad, 1e-13)
    if target_kind == "tensor-with-grad":
        assert_close(ours_target.grad, tt.grad, 1e-13)


def test_mse_loss_accepts_a_number_as_target_like_torch():
    prediction = np.array([[1.0, 2.0], [4.0, -1.0]])
    leaf = tinyad_leaf(prediction)
    loss = F.mse_loss(leaf, 1.5)
    loss.backward()
    tp = torch_leaf(prediction)
    expected = TF.mse_loss(tp, torch.full_like(tp, 1.5))
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-14)
    assert_close(leaf.grad, tp.grad, 1e-14)
