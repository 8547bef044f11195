"""``Tensor``: an array that remembers how it was computed.

A Tensor is a node of the same graph as ``Value`` (``tinyad.graph``): the same
topological sort and the same backward loop serve both. The difference is
only in the local derivatives, which here are vector-Jacobian products on
arrays: a backward function receives ``upstream`` = dL/d(output), an array
of the output's shape, and returns dL/d(input) for each input, an array of
that input's shape.

This file holds the class and what every op shares: making a result node
(``_result``), turning numbers into constant tensors (``_operand``), the one
format for shape errors (``shape_error``) and for device mismatches
(``device_error``), and ``unbroadcast``. The ops themselves, each forward
beside its backward, live in ``tinyad/ops/`` by family: ``elementwise``,
``reductions``, ``shape`` (shapes, indexing, joining) and ``linalg``; the
methods below only point there.

Broadcasting makes one extra rule necessary. When an input of shape (3,) is
stretched to (4, 3), each of its elements is *used* 4 times, and by the
multivariate chain rule the gradients of all uses add up. ``unbroadcast``
therefore sums the upstream gradient over every axis that broadcasting
added or stretched; every binary op calls it.

Array work goes through ``self.backend.xp`` (NumPy or CuPy), never through an
imported ``numpy``.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, Sequence, Union

from . import graph
from .backend import Backend, get_backend
from .graph import Node

__all__ = ["Tensor", "tensor"]

TensorLike = Union["Tensor", int, float]
Axis = Union[None, int, Sequence[int]]


# ---------------------------------------------------------------------------
# helpers shared by every op
# ---------------------------------------------------------------------------


def _result(data: Any, parents: tuple, op: str, backward_fn: Callable, backend: Backend, saved: Any = None) -> "Tensor":
    """The output node of ``op`` on ``parents``: recorded on the graph only if
    recording is on and some input needs a gradient."""
    if not isinstance(data, backend.array_type):
        data = backend.xp.asarray(data)  # NumPy returns scalars for 0-d results; keep arrays
    if graph.is_grad_enabled() and any([parent.requires_grad for parent in parents]):
        return Tensor._wrap(data, backend, True, parents, op, backward_fn, saved)
    return Tensor._wrap(data, backend)


def _operand(tensor: "Tensor", other: Any, op: str) -> "Tensor | None":
    """``other`` as a Tensor on ``tensor``'s device; numbers become constant leaves.

    None for anything else, so that an operator can return NotImplemented.
    """
    if isinstance(other, Tensor):
        if other.backend is not tensor.backend:
            raise device_error(op, tensor.device, other.device)
        return other
    if isinstance(other, (int, float)) and not isinstance(other, bool):
        # a Python number adopts the tensor's dtype where its kind fits (NumPy 2's
        # rule for scalars): float32 + 0.5 stays float32, but int64 * 0.5 is float64
        backend = tensor.backend
        dtype = tensor.data.dtype
        if dtype.kind not in "fc":
            dtype = backend.xp.result_type(dtype, other)
        return Tensor._wrap(backend.scalar(other, dtype), backend)
    if isinstance(other, tensor.backend.array_type):
        # a plain array is a constant too (NumPy's own promotion rules apply)
        return Tensor._wrap(other, tensor.backend)
    return None


def shape_error(op: str, *shapes: tuple, why: str = "cannot be broadcast together") -> ValueError:
    """The one format for shapes that do not fit together: op, every shape, the rule broken.

    (A message about one tensor's own shape, such as an axis out of range, is not a
    mismatch and says what it needs in its own words.)
    """
    names = [str(tuple(shape)) for shape in shapes]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return ValueError(f"{op}: shapes {listed} {why}")


def quiet_numpy(xp: Any) -> Any:
    """A block in which NumPy does not warn about division by zero or invalid values:
    for the places where an inf (or a NaN that a later select discards) is the
    intended intermediate, as in 0 ** -1 at the kink of a power. CuPy never warns."""
    return xp.errstate(divide="ignore", invalid="ignore") if hasattr(xp, "errstate") else nullcontext()


def device_error(op: str, first: str, second: str, what: str = "") -> ValueError:
    """The one format for tensors on two devices: op, both devices, and the fix."""
    return ValueError(
        f"{op}: tensors are on different devices, {first} and {second}{what}; move one with .to(device)"
    )


def unbroadcast(gradient: Any, shape: tuple) -> Any:
    """Sum ``gradient`` down to ``shape``: the gradient of a broadcast input.

    An input that broadcasting repeated along an axis receives the sum of the
    gradients of all its copies (the chain rule adds over every use).
    Broadcasting lines shapes up from the right: the leading axes that it
    added are summed away, and the axes it stretched from size 1 are summed
    back to size 1.
    """
    if gradient.shape == shape:
        return gradient  # nothing was broadcast
    added = len(gradient.shape) - len(shape)
    if added > 0:
        gradient = gradient.sum(axis=tuple(range(added)))
    stretched = tuple(axis for axis, size in enumerate(shape) if size == 1 and gradient.shape[axis] != 1)
    if stretched:
        gradient = gradient.sum(axis=stretched, keepdims=True)
    return gradient


def first_bad(backend: Backend, data: Any, bad: Any) -> str:
    """Describe the first element of ``data`` where the mask ``bad`` holds (for error messages)."""
    xp = backend.xp
    count = int(bad.sum())
    flat_index = int(xp.argmax(bad.reshape(-1)))
    index = tuple(int(i) for i in xp.unravel_index(flat_index, data.shape)) if data.ndim else ()
    value = data.reshape(-1)[flat_index].item()
    where_ = f" at index {index}" if index else ""
    return f"got {value!r}{where_} ({count} of {data.size} elements)"


def result_dtype(a: "Tensor", b: "Tensor") -> Any:
    """The dtype PyTorch computes ``a op b`` in, where it differs from NumPy's rule.

    Kinds rank bool < integer < floating < complex, and the higher kind wins.
    Within it, a tensor with dimensions decides over a 0-d one: float32 + an
    int64 tensor stays float32, and a 0-d float64 tensor does not turn a
    float32 batch into float64 (NumPy 2 would give float64 in both cases).
    """
    rank = {"b": 0, "i": 1, "u": 1, "f": 2, "c": 3}
    top = max(rank[a.dtype.kind], rank[b.dtype.kind])
    candidates = [t for t in (a, b) if rank[t.dtype.kind] == top]
    deciding = [t for t in candidates if t.ndim > 0] or candidates
    return a.backend.xp.result_type(*(t.dtype for t in deciding))


def _binary(function: Callable, tensor: "Tensor", other: Any, symbol: str, reflected: bool = False) -> Any:
    """``function(tensor, other)`` for an operator, or ``function(other, tensor)``
    for its reflected form (``2 - t``); NotImplemented for an operand that is
    no tensor, number or array, so that Python can try the other side."""
    other = _operand(tensor, other, symbol)
    if other is None:
        return NotImplemented
    return function(other, tensor) if reflected else function(tensor, other)


class _Size(int):
    """The element count, an int (NumPy's ``.size``), that can also be called as
    PyTorch's ``size()`` method: ``t.size()`` is the shape, ``t.size(d)`` one side.

    The two libraries use one name for two things; this int answers both.
    """

    def __new__(cls, count: int, shape: tuple) -> "_Size":
        size = super().__new__(cls, count)
        size.shape = tuple(shape)
        return size

    def __call__(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]


# ---------------------------------------------------------------------------
# the Tensor class
# ---------------------------------------------------------------------------


class Tensor(Node):
    """An n-dimensional array node: ``.data`` (the array), ``.grad`` (same shape,
    None until a backward pass reaches it), ``.requires_grad``, ``.label``.

    Python numbers and lists become float64, NumPy's default and what
    finite-difference checks need; an explicit ``dtype`` or a float32 array
    keeps its type. Only floating-point tensors can require gradients.
    """

    __slots__ = ("backend", "requires_grad")

    # ndarray + Tensor must reach Tensor.__radd__ (and so the graph) instead of
    # NumPy looping over the tensor as if it were a sequence of objects
    __array_ufunc__ = None

    def __init__(
        self,
        data: Any,
        requires_grad: bool = False,
        dtype: Any = None,
        device: str | None = None,
        label: str = "",
    ) -> None:
        backend = get_backend(device)
        if isinstance(data, Tensor):
            data = data.data if data.backend is backend else data.numpy()
        if dtype is None and isinstance(data, (int, float, list, tuple)):
            dtype = "float64"
        # a copy, as torch.tensor makes: optimizers update .data in place and
        # must not write into the caller's array
        array = backend.xp.array(data, dtype=dtype, copy=True)
        if array.dtype.kind not in "biufc":
            raise TypeError(
                f"a Tensor holds numbers (bool, int, float or complex), got dtype {array.dtype} from {data!r:.60}"
            )
        if requires_grad and array.dtype.kind != "f":
            raise ValueError(
                f"only floating-point tensors can require gradients, got dtype {array.dtype}: "
                "a gradient is a small real change, which an integer cannot make "
                "(create the tensor with dtype='float64')"
            )
        self._set_slots(array, backend, bool(requires_grad), label=label)

    def _set_slots(self, array: Any, backend: Backend, requires_grad: bool, parents: tuple = (), op: str = "",
                   backward_fn: Callable | None = None, saved: Any = None, label: str = "") -> None:
        """Every slot, written in this one place: the graph's (Node's), then a Tensor's own two."""
        Node.__init__(self, array, parents, op, backward_fn, saved, label)
        self.backend = backend
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, array: Any, backend: Backend, requires_grad: bool = False, *recorded: Any) -> "Tensor":
        """A node around ``array`` as it is (no copy, no checks): an op's result (``recorded``:
        its parents, op, backward function and what backward needs), or a constant leaf."""
        out = cls.__new__(cls)
        out._set_slots(array, backend, requires_grad, *recorded)
        return out

    # ---- plain attributes --------------------------------------------------

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def size(self) -> "_Size":
        """NumPy's ``t.size`` (how many numbers) and PyTorch's ``t.size()`` (the shape) and ``t.size(d)``."""
        return _Size(self.data.size, self.data.shape)

    @property
    def device(self) -> str:
        return self.backend.device

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        name = f", label={self.label!r}" if self.label else ""
        grad = ", requires_grad=True" if self.requires_grad else ""
        device = f", device={self.device!r}" if self.device != "cpu" else ""
        body = str(self.numpy()).replace("\n", "\n       ")
        return f"tensor({body}{grad}{device}{name})"

    def item(self) -> float:
        """The single number in a one-element tensor (copied to the host)."""
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor has an item, this one has shape {self.shape}")
        return self.data.item()

    def numpy(self) -> Any:
        """The data as a NumPy array (a copy to the host for GPU tensors)."""
        return self.backend.to_numpy(self.data)

    def detach(self) -> "Tensor":
        """The same data as a new leaf: gradients will not flow through it."""
        return Tensor._wrap(self.data, self.backend)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Mark a leaf as needing a gradient (in place), as PyTorch does."""
        if requires_grad and self.data.dtype.kind != "f":
            raise ValueError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        self.requires_grad = requires_grad
        return self

    # ---- the backward pass -------------------------------------------------

    def backward(self, grad: Any = None) -> None:
        """Fill ``.grad`` of every tensor this one depends on with dL/d(tensor).

        For a one-element output the seed is dL/dL = 1. For any other shape
        the loss is not this tensor, so you must say what dL/d(this tensor)
        is by passing ``grad`` (an array of this shape).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad: none of the tensors it was computed "
                "from has requires_grad=True (or it was computed under no_grad)"
            )
        xp = self.backend.xp
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: a gradient is needed for non-scalar outputs: this tensor has shape "
                    f"{self.shape}; call backward(grad) with dL/d(output) of that shape, or reduce "
                    "it to one number first (for example .sum())"
                )
            seed = xp.ones_like(self.data)
        else:
            if isinstance(grad, Tensor):
                grad = grad.data
            seed = xp.asarray(grad, dtype=self.data.dtype)
            if seed.shape != self.shape:
                raise shape_error("backward", seed.shape, self.shape, why="differ: grad must have the output's shape")
        graph.run_backward(self, seed)

    def add_to_grad(self, gradient: Any) -> None:
        """Add one pass's dL/d(this tensor) into ``.grad``.

        A leaf's gradient is what optimizers read and users change, so a leaf
        gets its own writable array in its own dtype: the message it received
        may be recorded on an edge too, be a read-only broadcast view, or a
        NumPy scalar.
        """
        if self.grad is not None:
            self.grad = self.grad + gradient
        elif self.parents:
            self.grad = gradient
        else:
            self.grad = self.backend.xp.array(gradient, dtype=self.data.dtype, copy=True)

    # ---- operators and methods: each op lives in tinyad/ops/ ----------------

    def __add__(self, other: TensorLike) -> "Tensor":
        return _binary(elementwise.add, self, other, "+")

    def __radd__(self, other: TensorLike) -> "Tensor":
        return _binary(elementwise.add, self, other, "+", reflected=True)

    def __sub__(self, other: TensorLike) -> "Tensor":
        return _binary(elementwise.sub, self, other, "-")

    def __rsub__(self, other: TensorLike) -> "Tensor":
        return _binary(elementwise.sub, self, other, "-", reflected=True)

    def __mul__(self, other: TensorLike) -> "Tensor":
        return _binary(elementwise.mul, self, other, "*")

    def __rmul__(self, other: TensorLike) -> "Tensor":
        return _binary(elementwise.mul, self, other, "*", reflected=True)

    def __truediv__(self, other: TensorLike) -> "Tensor":
        return _binary(elementwise.div, self, other, "/")

    def __rtruediv__(self, other: TensorLike) -> "Tensor":
        return _binary(elementwise.div, self, other, "/", reflected=True)

    def __pow__(self, exponent: TensorLike) -> "Tensor":
        if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
            return elementwise.power(self, exponent)
        return _binary(elementwise.tensor_power, self, exponent, "**")

    def __rpow__(self, base: TensorLike) -> "Tensor":
        return _binary(elementwise.tensor_power, self, base, "**", reflected=True)

    def __matmul__(self, other: "Tensor") -> "Tensor":
        return _binary(linalg.matmul, self, other, "@")

    def __rmatmul__(self, other: Any) -> "Tensor":
        return _binary(linalg.matmul, self, other, "@", reflected=True)

    def __neg__(self) -> "Tensor":
        return elementwise.neg(self)

    def exp(self) -> "Tensor":
        return elementwise.exp(self)

    def log(self) -> "Tensor":
        return elementwise.log(self)

    def sqrt(self) -> "Tensor":
        return elementwise.sqrt(self)

    def tanh(self) -> "Tensor":
        return elementwise.tanh(self)

    def sigmoid(self) -> "Tensor":
        return elementwise.sigmoid(self)

    def relu(self) -> "Tensor":
        return elementwise.relu(self)

    def abs(self) -> "Tensor":
        return elementwise.abs(self)

    __abs__ = abs

    # Reductions take NumPy's axis=/keepdims= and PyTorch's dim=/keepdim= (see ops/reductions.py).

    def sum(self, dim: Axis = None, keepdim: bool | None = None, *, axis: Axis = None,
            keepdims: bool | None = None) -> "Tensor":
        """Sum over ``dim`` (or NumPy's ``axis``): see ``tinyad.sum``."""
        return reductions.sum(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def mean(self, dim: Axis = None, keepdim: bool | None = None, *, axis: Axis = None,
             keepdims: bool | None = None) -> "Tensor":
        """Average over ``dim`` (or ``axis``): see ``tinyad.mean``."""
        return reductions.mean(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def var(self, dim: Axis = None, unbiased: bool | None = None, keepdim: bool | None = None, *,
            correction: Any = None, axis: Axis = None, keepdims: bool | None = None, ddof: Any = None) -> "Tensor":
        """Variance, unbiased unless told (``unbiased=False``, ``correction=0``, ``ddof=0``): see ``tinyad.var``."""
        return reductions.var(self, dim, unbiased, keepdim, correction=correction, axis=axis, keepdims=keepdims,
                              ddof=ddof)

    def std(self, dim: Axis = None, unbiased: bool | None = None, keepdim: bool | None = None, *,
            correction: Any = None, axis: Axis = None, keepdims: bool | None = None, ddof: Any = None) -> "Tensor":
        """Standard deviation, unbiased unless told: see ``tinyad.std``."""
        return reductions.std(self, dim, unbiased, keepdim, correction=correction, axis=axis, keepdims=keepdims,
                              ddof=ddof)

    def max(self, dim: int | None = None, keepdim: bool | None = None, *, axis: Axis = None,
            keepdims: bool | None = None) -> Any:
        """A tensor without a dim or with ``axis=``; ``(values, indices)`` with a dim, as in PyTorch: see ``tinyad.max``."""
        return reductions.max(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def min(self, dim: int | None = None, keepdim: bool | None = None, *, axis: Axis = None,
            keepdims: bool | None = None) -> Any:
        """Like ``max``, for the smallest values: see ``tinyad.min``."""
        return reductions.min(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def amax(self, dim: Axis = None, keepdim: bool | None = None, *, axis: Axis = None,
             keepdims: bool | None = None) -> "Tensor":
        """The largest values over one or several axes (ties share the gradient): see ``tinyad.amax``."""
        return reductions.amax(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def amin(self, dim: Axis = None, keepdim: bool | None = None, *, axis: Axis = None,
             keepdims: bool | None = None) -> "Tensor":
        """The smallest values over one or several axes (ties share the gradient): see ``tinyad.amin``."""
        return reductions.amin(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def argmax(self, dim: int | None = None, keepdim: bool | None = None, *, axis: int | None = None,
               keepdims: bool | None = None) -> "Tensor":
        """Index of the largest value (int64, no gradient): see ``tinyad.argmax``."""
        return reductions.argmax(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def argmin(self, dim: int | None = None, keepdim: bool | None = None, *, axis: int | None = None,
               keepdims: bool | None = None) -> "Tensor":
        """Index of the smallest value (int64, no gradient): see ``tinyad.argmin``."""
        return reductions.argmin(self, dim, keepdim, axis=axis, keepdims=keepdims)

    def reshape(self, *shape: Any) -> "Tensor":
        return shape_ops.reshape(self, *shape)

    def permute(self, *dims: Any) -> "Tensor":
        return shape_ops.permute(self, *dims)

    def transpose(self, dim0: int = -2, dim1: int = -1) -> "Tensor":
        return shape_ops.transpose(self, dim0, dim1)

    @property
    def T(self) -> "Tensor":
        """All axes reversed (the matrix transpose for 2-D)."""
        return shape_ops.permute(self, tuple(reversed(range(self.ndim))))

    # PyTorch's shape spellings; each is a reshape, a permute or a shape op, so the graph shows it

    def view(self, *shape: Any) -> "Tensor":
        """PyTorch's name for reshape (tinyad never shares storage between tensors, so any shape that fits works)."""
        return shape_ops.reshape(self, *shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        """Merge the axes ``start_dim`` to ``end_dim`` into one (a reshape node)."""
        return shape_ops.flatten(self, start_dim, end_dim)

    def unsqueeze(self, dim: int) -> "Tensor":
        """Insert an axis of size 1 at ``dim`` (a reshape node)."""
        return shape_ops.unsqueeze(self, dim)

    def squeeze(self, dim: Axis = None) -> "Tensor":
        """Drop the axes of size 1, or only ``dim`` if its size is 1 (a reshape node)."""
        return shape_ops.squeeze(self, dim)

    def expand(self, *sizes: Any) -> "Tensor":
        """Broadcast to ``sizes`` (-1 keeps an axis); the gradient is summed over the copies."""
        return shape_ops.expand(self, *sizes)

    def clone(self) -> "Tensor":
        """A copy of the numbers that stays on the graph."""
        return shape_ops.clone(self)

    def t(self) -> "Tensor":
        """The matrix transpose of a tensor with at most 2 dimensions (PyTorch's ``t()``)."""
        if self.ndim > 2:
            raise ValueError(f"t: expects a tensor with at most 2 dimensions, got shape {self.shape}; use transpose(d0, d1) or permute")
        return shape_ops.transpose(self, 0, -1) if self.ndim == 2 else shape_ops.permute(self, tuple(range(self.ndim)))

    def numel(self) -> int:
        """How many numbers the tensor holds (NumPy's ``.size``)."""
        return self.data.size

    nelement = numel  # PyTorch's older name

    def dim(self) -> int:
        """How many axes the tensor has (NumPy's ``.ndim``)."""
        return self.data.ndim

    def float(self) -> "Tensor":
        """This tensor as float32 (a node: the gradient is cast back)."""
        return elementwise.cast(self, "float32")

    def double(self) -> "Tensor":
        """This tensor as float64 (a node: the gradient is cast back)."""
        return elementwise.cast(self, "float64")

    def long(self) -> "Tensor":
        """This tensor as int64, for indices and class labels: a constant, as integers have no gradient."""
        return Tensor._wrap(self.data.astype(self.backend.xp.int64), self.backend)

    def retain_grad(self) -> None:
        """Nothing to do: tinyad keeps the gradient of every node, not only of leaves (PyTorch's code asks)."""

    def __getitem__(self, index: Any) -> "Tensor":
        return shape_ops.getitem(self, index)

    # ---- elementwise comparisons used as masks (not differentiable) -------------

    def __gt__(self, other: Any) -> "Tensor":
        return Tensor._wrap(self.data > _raw(other), self.backend)

    def __lt__(self, other: Any) -> "Tensor":
        return Tensor._wrap(self.data < _raw(other), self.backend)

    def __ge__(self, other: Any) -> "Tensor":
        return Tensor._wrap(self.data >= _raw(other), self.backend)

    def __le__(self, other: Any) -> "Tensor":
        return Tensor._wrap(self.data <= _raw(other), self.backend)

    # ---- moving between devices ---------------------------------------------------

    def to(self, device: str) -> "Tensor":
        """This tensor on ``device``; gradients flow back across the copy."""
        target = get_backend(device)
        if target is self.backend:
            return self
        # through the host: a NumPy array is what every backend can take in
        data = target.asarray(self.backend.to_numpy(self.data))
        return _result(data, (self,), f"to({target.device})", _to_backward, target, saved=self.backend)

    def cpu(self) -> "Tensor":
        return self.to("cpu")


def _to_backward(node: Tensor, upstream: Any) -> tuple:
    # a copy is the identity: the gradient is copied back to the source device
    source = node.saved
    return (source.asarray(node.backend.to_numpy(upstream)),)


def _raw(other: Any) -> Any:
    return other.data if isinstance(other, Tensor) else other


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, device: str | None = None, label: str = "") -> Tensor:
    """Make a Tensor (PyTorch's spelling)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device, label=label)


# The op modules build Tensors, so they are imported once the class exists.
from .ops import elementwise, linalg, reductions  # noqa: E402
from .ops import shape as shape_ops  # noqa: E402
