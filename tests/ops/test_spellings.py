"""PyTorch's spellings beside NumPy's: the same call in either spelling gives torch's
numbers and gradients, in float64 and float32 (issue 17, point 1)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyad
from tinyad import Tensor

from tensor_oracle import arrays, assert_matches_torch, shapes

DTYPES = [np.float64, np.float32]
RNG = np.random.default_rng(17)
X = RNG.normal(size=(3, 4, 5))


# ---- reductions: dim=/keepdim=, axis=/keepdims=, a positional dim -----------------


REDUCTIONS = {
    # name: (tinyad call, torch call), the tinyad call in torch's spelling
    "sum positional": (lambda t: t.sum(1, True), lambda t: t.sum(1, True)),
    "sum dim tuple": (lambda t: t.sum(dim=(0, 2)), lambda t: t.sum(dim=(0, 2))),
    "mean keepdim": (lambda t: t.mean(-1, keepdim=True), lambda t: t.mean(-1, keepdim=True)),
    "var unbiased": (lambda t: t.var(0, unbiased=True), lambda t: t.var(0, unbiased=True)),
    "var biased": (lambda t: t.var(dim=1, unbiased=False, keepdim=True), lambda t: t.var(dim=1, unbiased=False, keepdim=True)),
    "var correction": (lambda t: t.var(dim=(0, 1), correction=2), lambda t: t.var(dim=(0, 1), correction=2)),
    "var positional unbiased": (lambda t: t.var(2, False), lambda t: t.var(2, False)),
    "std": (lambda t: t.std(), lambda t: t.std()),
    "std dim": (lambda t: t.std(1, keepdim=True), lambda t: t.std(1, keepdim=True)),
    "std correction 0": (lambda t: t.std(dim=0, correction=0), lambda t: t.std(dim=0, correction=0)),
    "amax": (lambda t: t.amax(dim=(1, 2)), lambda t: t.amax(dim=(1, 2))),
    "amin keepdim": (lambda t: t.amin(1, keepdim=True), lambda t: t.amin(1, keepdim=True)),
    "max no dim": (lambda t: t.max(), lambda t: t.max()),
    "min no dim": (lambda t: t.min(), lambda t: t.min()),
    "max dim values": (lambda t: t.max(1).values, lambda t: t.max(1).values),
    "max keepdim values": (lambda t: t.max(1, keepdim=True).values, lambda t: t.max(1, keepdim=True).values),
    "min dim values": (lambda t: t.min(dim=-1).values, lambda t: t.min(dim=-1).values),
    "tinyad.sum": (lambda t: tinyad.sum(t, 0), lambda t: torch.sum(t, 0)),
    "tinyad.mean": (lambda t: tinyad.mean(t, dim=2, keepdim=True), lambda t: torch.mean(t, dim=2, keepdim=True)),
    "tinyad.std": (lambda t: tinyad.std(t, 1), lambda t: torch.std(t, 1)),
    "tinyad.max": (lambda t: tinyad.max(t, 0)[0], lambda t: torch.max(t, 0)[0]),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reduction_in_torch_spelling_matches_torch(name, dtype):
    ours, theirs = REDUCTIONS[name]
    assert_matches_torch(ours, [X], theirs, dtype=dtype)


@pytest.mark.parametrize("op", ["sum", "mean", "var", "std", "amax", "amin"])
def test_numpy_and_torch_spellings_are_the_same_call(op):
    x = Tensor(X)
    numpy_spelling = getattr(x, op)(axis=(0, 2), keepdims=True)
    torch_spelling = getattr(x, op)(dim=(0, 2), keepdim=True)
    positional = getattr(x, op)((0, 2), keepdim=True) if op not in ("var", "std") else getattr(x, op)((0, 2), None, True)
    np.testing.assert_array_equal(numpy_spelling.numpy(), torch_spelling.numpy())
    np.testing.assert_array_equal(numpy_spelling.numpy(), positional.numpy())


def test_max_with_a_dim_returns_values_and_indices_like_torch():
    result = Tensor(X).max(1)
    expected = torch.tensor(X).max(1)
    assert type(result).__name__ == "ValuesIndices" and result._fields == ("values", "indices")
    values, indices = result  # unpacks like torch's named tuple
    np.testing.assert_array_equal(values.numpy(), expected.values.numpy())
    np.testing.assert_array_equal(indices.numpy(), expected.indices.numpy())
    assert indices.dtype == np.int64 and not indices.requires_grad


def test_max_with_axis_returns_a_tensor_as_numpy_does():
    result = Tensor(X).max(axis=1)
    assert isinstance(result, Tensor)
    np.testing.assert_array_equal(result.numpy(), X.max(axis=1))


def test_min_with_a_dim_returns_the_indices_torch_returns():
    result = Tensor(X).min(-1, keepdim=True)
    expected = torch.tensor(X).min(-1, keepdim=True)
    np.testing.assert_array_equal(result.indices.numpy(), expected.indices.numpy())
    assert result.values.shape == tuple(expected.values.shape)


def test_max_with_a_dim_sends_the_gradient_to_the_first_of_tied_maxima_like_torch():
    data = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    ours, theirs = Tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    ours.max(1).values.sum().backward()
    theirs.max(1).values.sum().backward()
    np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())
    np.testing.assert_array_equal(ours.grad, [[0, 1, 0], [1, 0, 0]])


def test_max_without_a_dim_shares_the_gradient_between_ties_like_torch():
    data = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    ours, theirs = Tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    ours.max().backward()
    theirs.max().backward()
    np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@pytest.mark.parametrize("kwargs", [{}, {"dim": 1}, {"dim": -1, "keepdim": True}, {"dim": None, "keepdim": True}])
def test_argmax_and_argmin_match_torch(op, kwargs):
    data = np.round(X * 2) / 2  # ties, to check that the first index wins in both
    ours = getattr(Tensor(data), op)(**kwargs)
    theirs = getattr(torch.tensor(data), op)(**kwargs)
    assert ours.shape == tuple(theirs.shape)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert ours.dtype == np.int64


def test_max_of_a_zero_dimensional_tensor_with_a_dim_matches_torch():
    ours = Tensor(2.5, requires_grad=True).max(0)
    theirs = torch.tensor(2.5).max(0)
    assert ours.values.shape == () == tuple(theirs.values.shape)
    assert ours.indices.item() == theirs.indices.item() == 0


@pytest.mark.parametrize("call, message", [
    (lambda t: t.sum(dim=0, axis=0), "both dim=0 and axis=0"),
    (lambda t: t.mean(0, keepdim=True, keepdims=True), "both keepdim=True and keepdims=True"),
    (lambda t: t.var(0, unbiased=True, correction=1), "pass only one"),
    (lambda t: t.std(0, correction=0, ddof=0), "pass only one"),
    (lambda t: t.var(0, 1), "unbiased must be True or False"),
    (lambda t: t.max(dim=(0, 1)), "dim must be an int"),
    (lambda t: tinyad.cat([t, t], dim=0, axis=1), "both dim=0 and axis=1"),
    (lambda t: tinyad.cat([t, t], dim=1, axis=1), "both dim=1 and axis=1"),
])
def test_two_spellings_of_one_argument_at_once_are_refused(call, message):
    with pytest.raises(TypeError, match=message):
        call(Tensor(X))


def test_var_and_std_default_to_the_unbiased_estimate_even_with_numpy_axis():
    x = Tensor(X)
    np.testing.assert_allclose(x.var(axis=0).numpy(), X.var(axis=0, ddof=1), rtol=1e-13)
    np.testing.assert_allclose(x.std(axis=0).numpy(), X.std(axis=0, ddof=1), rtol=1e-13)
    np.testing.assert_allclose(x.std(axis=0, ddof=0).numpy(), X.std(axis=0), rtol=1e-13)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), op=st.sampled_from(["sum", "mean", "amax", "std", "max-dim"]),
       keepdim=st.booleans(), dtype=st.sampled_from(DTYPES))
def test_random_shapes_and_dims_match_torch(data, op, keepdim, dtype):
    shape = data.draw(shapes(min_dims=1, max_dims=3, min_side=2))
    x = data.draw(arrays(shape))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    if op in ("max-dim", "std"):
        # no ties: max's selected element is unique, and no slice has a rounding-noise std of ~1e-150
        x = x + np.arange(x.size).reshape(shape) * 1e-3
    if op == "max-dim":
        fn = lambda t: t.max(dim, keepdim=keepdim).values  # noqa: E731
    else:
        fn = lambda t: getattr(t, op)(dim, keepdim=keepdim)  # noqa: E731
    assert_matches_torch(fn, [x], dtype=dtype, rtol=1e-9 if dtype == np.float64 else 1e-4,
                         atol=1e-10 if dtype == np.float64 else 1e-5)


# ---- shape spellings -------------------------------------------------------------------

SHAPE_OPS = {
    "view": lambda t: t.view(4, -1) * 2,
    "view tuple": lambda t: t.view((5, 12)) * 2,
    "flatten": lambda t: t.flatten() * 2,
    "flatten 1": lambda t: t.flatten(1) * 2,
    "flatten 0..1": lambda t: t.flatten(0, 1) * 2,
    "unsqueeze": lambda t: t.unsqueeze(1) * 2,
    "unsqueeze -1": lambda t: t.unsqueeze(-1) * 2,
    "squeeze": lambda t: t.unsqueeze(0).unsqueeze(2).squeeze() * 2,
    "squeeze dim": lambda t: t.unsqueeze(0).squeeze(0) * 2,
    "squeeze dim of size > 1": lambda t: t.squeeze(1) * 2,
    "expand": lambda t: t[:, :1, :].expand(3, 4, 5) * t,
    "expand -1 and new axis": lambda t: t[:1].expand(2, -1, -1, -1) * 2,
    "clone": lambda t: t.clone() * t,
    "t": lambda t: t[0].t() * 2,
    "t 1-D": lambda t: t[0, 0].t() * 2,
    "double": lambda t: t.double() * 2,
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(SHAPE_OPS))
def test_shape_spelling_matches_torch(name, dtype):
    fn = SHAPE_OPS[name]
    if name == "double":
        assert_matches_torch(lambda t: fn(t).float() if dtype == np.float32 else fn(t), [X],
                             lambda t: fn(t).float() if dtype == np.float32 else fn(t), dtype=dtype)
    else:
        assert_matches_torch(fn, [X], dtype=dtype)


def test_float_casts_to_float32_and_sends_the_gradient_back_in_float64():
    x = Tensor(X, requires_grad=True)
    y = x.float()
    assert y.dtype == np.float32
    (y * 3).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad, np.full(X.shape, 3.0))


def test_clone_copies_the_numbers():
    x = Tensor(X)
    y = x.clone()
    y.data[0, 0, 0] = 100.0
    assert x.data[0, 0, 0] == X[0, 0, 0]


def test_size_is_numpys_count_and_torchs_shape():
    x = Tensor(X)
    assert x.size == 60 == X.size and x.numel() == 60
    assert x.size() == (3, 4, 5) == tuple(torch.tensor(X).size())
    assert x.size(1) == 4 and x.size(-1) == 5 and x.dim() == 3


def test_long_gives_int64_indices():
    assert Tensor([1.0, 2.0]).long().dtype == np.int64


@pytest.mark.parametrize("call, error, message", [
    (lambda t: t.expand(3, 8, 5), ValueError, "only axes of size 1 can grow"),
    (lambda t: t.expand(4, 5), ValueError, "fewer than the 3 axes"),
    (lambda t: t.unsqueeze(4), ValueError, "out of range"),
    (lambda t: t.flatten(2, 1), ValueError, "comes after"),
    (lambda t: t.t(), ValueError, "at most 2 dimensions"),
])
def test_bad_shape_arguments_say_what_is_wrong(call, error, message):
    with pytest.raises(error, match=message):
        call(Tensor(X))


# ---- functions: tinyad.exp(x), tinyad.cat, tinyad.zeros, ... --------------------------------

FUNCTIONS = ["exp", "tanh", "sigmoid", "relu", "abs"]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name", FUNCTIONS + ["log", "sqrt"])
def test_function_spelling_matches_torch(name, dtype):
    data = np.abs(X) + 0.1 if name in ("log", "sqrt") else X
    assert_matches_torch(lambda t: getattr(tinyad, name)(t), [data], lambda t: getattr(torch, name)(t), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_cat_matches_torch_cat(dtype):
    assert_matches_torch(lambda a, b: tinyad.cat([a, b], dim=1), [X, X[:, :2] * 2],
                         lambda a, b: torch.cat([a, b], dim=1), dtype=dtype)
    assert_matches_torch(lambda a, b: tinyad.cat([a, b]), [X, X * 2], lambda a, b: torch.cat([a, b]), dtype=dtype)
    assert_matches_torch(lambda a, b: tinyad.cat([a, b], axis=2), [X, X[..., :1]],
                         lambda a, b: torch.cat([a, b], dim=2), dtype=dtype)


def test_creation_functions_give_torchs_shapes_and_tinyads_float64():
    for make in ("zeros", "ones", "randn", "rand"):
        assert getattr(tinyad, make)(2, 3).shape == (2, 3) == getattr(tinyad, make)((2, 3)).shape
        assert getattr(tinyad, make)(2, 3).dtype == np.float64
        assert getattr(tinyad, make)(2, dtype="float32").dtype == np.float32
    np.testing.assert_array_equal(tinyad.zeros(2, 3).numpy(), torch.zeros(2, 3).numpy())
    np.testing.assert_array_equal(tinyad.ones(4).numpy(), torch.ones(4).numpy())
    np.testing.assert_array_equal(tinyad.full((2, 2), 7.0).numpy(), torch.full((2, 2), 7.0).numpy())


@pytest.mark.parametrize("args", [(5,), (2, 7), (1, 2, 0.25), (0.0, 1.0, 0.125)])
def test_arange_matches_torch_and_whole_numbers_give_int64(args):
    ours, theirs = tinyad.arange(*args), torch.arange(*args)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy())
    whole = all(isinstance(a, int) for a in args)
    assert ours.dtype == (np.int64 if whole else np.float64)


def test_like_functions_copy_shape_dtype_and_device():
    x = Tensor(X, dtype="float32")
    for make in (tinyad.zeros_like, tinyad.ones_like, tinyad.randn_like, tinyad.rand_like):
        made = make(x)
        assert made.shape == x.shape and made.dtype == np.float32 and made.device == "cpu"
    assert tinyad.full_like(x, 2.0).numpy().tolist() == np.full(X.shape, 2.0).tolist()


def test_manual_seed_and_a_generator_make_random_tensors_reproducible():
    tinyad.manual_seed(3)
    first = tinyad.randn(4).numpy()
    tinyad.manual_seed(3)
    np.testing.assert_array_equal(first, tinyad.randn(4).numpy())
    g = tinyad.Generator().manual_seed(2147483647)
    drawn = (tinyad.randn((2, 3), generator=g).numpy(), tinyad.randint(0, 10, (5,), generator=g).numpy())
    g = tinyad.Generator().manual_seed(2147483647)
    np.testing.assert_array_equal(drawn[0], tinyad.randn((2, 3), generator=g).numpy())
    np.testing.assert_array_equal(drawn[1], tinyad.randint(0, 10, (5,), generator=g).numpy())


def test_randint_short_form_and_range():
    values = tinyad.randint(3, (1000,))
    assert values.dtype == np.int64 and values.shape == (1000,)
    assert values.numpy().min() >= 0 and values.numpy().max() <= 2
    with pytest.raises(ValueError, match="is empty"):
        tinyad.randint(5, 5, (2,))


def test_retain_grad_is_accepted_and_intermediates_keep_their_gradient():
    x = Tensor(X, requires_grad=True)
    y = x * 2
    y.retain_grad()
    y.sum().backward()
    np.testing.assert_array_equal(y.grad, np.ones(X.shape))


def test_std_of_equal_values_has_gradient_zero_like_torch():
    data = np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 4.0]])
    ours, theirs = Tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    ours.std(1).sum().backward()
    theirs.std(1).sum().backward()
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-12)
    assert np.all(ours.grad[0] == 0)
