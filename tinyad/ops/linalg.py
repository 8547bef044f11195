"""Matrix multiplication, the op every linear layer is made of."""
from __future__ import annotations

from typing import Any

from ..tensor import Tensor, _result, shape_error, unbroadcast

__all__ = ["matmul"]


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` with NumPy's rules: 1-D operands, batch dimensions that broadcast."""
    if a.ndim == 0 or b.ndim == 0:
        raise shape_error("@", a.shape, b.shape, why="cannot be multiplied: matmul needs at least 1-D operands")
    try:
        data = a.data @ b.data
    except ValueError:
        raise shape_error(
            "@", a.shape, b.shape,
            why="are not aligned: the last dimension of the left operand must equal the "
            "second-to-last (or only) dimension of the right one",
        ) from None
    return _result(data, (a, b), "@", _matmul_backward, a.backend)


def _matmul_backward(node: Tensor, upstream: Any) -> tuple:
    # C = A B:  dL/dA = dL/dC B^T,  dL/dB = A^T dL/dC.
    # 1-D operands are treated as a row (left) or a column (right) matrix,
    # as NumPy does, and batch dimensions broadcast like elementwise ops.
    a, b = node.parents
    xp = node.backend.xp
    left = a.data[None, :] if a.ndim == 1 else a.data
    right = b.data[:, None] if b.ndim == 1 else b.data
    grad_c = upstream
    # the right operand's axis first: for 1-D @ 1-D the upstream is 0-d,
    # and only after it has one axis can the left's axis go in front of it
    if b.ndim == 1:
        grad_c = xp.expand_dims(grad_c, -1)
    if a.ndim == 1:
        grad_c = xp.expand_dims(grad_c, -2)
    grad_a = grad_b = None
    if a.requires_grad:
        grad_a = grad_c @ xp.swapaxes(right, -1, -2)
        if a.ndim == 1:
            grad_a = grad_a[..., 0, :]
        grad_a = unbroadcast(grad_a, a.shape)
    if b.requires_grad:
        grad_b = xp.swapaxes(left, -1, -2) @ grad_c
        if b.ndim == 1:
            grad_b = grad_b[..., :, 0]
        grad_b = unbroadcast(grad_b, b.shape)
    return (grad_a, grad_b)
