"""A NumPy stand-in for CuPy, so ``CupyBackend``'s own code runs on a machine without a GPU.

What it checks: the kernels' arithmetic (their map, reduce and elementwise
expressions are also valid Python, so they are evaluated with NumPy), their
argument order, CuPy's type-placeholder rules (every ``T`` bound to one dtype,
an output type bound by the inputs or by ``out=``), the accumulation type
(``reduce_type``), and that ``CupyBackend`` uses nothing CuPy lacks: the
namespace is *strict*, an attribute that CuPy 14.2 does not have raises
AttributeError instead of falling through to NumPy (``cupy_14_2_names.txt``
lists what CuPy 14.2 has). Its arrays are NumPy's, so methods called on arrays
(``.astype``, ``.reshape``...) are not checked this way. It does not check
compilation: that is ``test_cuda_compile.py``, with the real CuPy and NVRTC.

``benchmarks/gpu_smoke.py`` uses it too, when ``TINYAD_GPU_DRY_RUN=1``.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parent


def _names(file: str) -> frozenset:
    lines = (HERE / file).read_text().splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


CUPY_NAMES = _names("cupy_14_2_names.txt")

# C type names a kernel may use as reduce_type, and the NumPy dtype each means
C_TYPES = {"float": "float32", "double": "float64", "float16": "float16"}


def _params(text: str) -> list[tuple[str, str]]:
    """"T x, float32 y" -> [("T", "x"), ("float32", "y")]."""
    pairs = []
    for param in text.split(","):
        words = param.split()
        assert len(words) == 2, f"unsupported parameter {param!r} (the stand-in knows 'TYPE name' only)"
        pairs.append((words[0], words[1]))
    return pairs


class _FakeKernel:
    """Shared by the stand-in kernels: parses the parameters and binds type placeholders as CuPy does."""

    def __init__(self, in_params: str, out_params: str, name: str) -> None:
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and name.startswith("tinyad_"), name
        self.name = name
        self.inputs = _params(in_params)
        self.outputs = _params(out_params)
        names = [n for _, n in self.inputs + self.outputs]
        assert len(set(names)) == len(names) and "i" not in names, names

    def bind(self, args: tuple, outs: tuple = ()) -> tuple[dict, dict, tuple]:
        """(values by name, dtype by type name, broadcast shape), raising TypeError where CuPy would."""
        assert len(args) == len(self.inputs), f"{self.name}: {len(args)} arguments for {self.inputs}"
        types: dict = {}
        for (ctype, name), array in list(zip(self.outputs, outs)) + list(zip(self.inputs, args)):
            dtype = np.asarray(array).dtype
            if len(ctype) != 1:  # a concrete type: the argument must have it
                if dtype != np.dtype(ctype):
                    raise TypeError(f"Type is mismatched. {name} {dtype} {ctype}")
            elif ctype in types and types[ctype] != dtype:
                raise TypeError(f"Type is mismatched. {name} {dtype} {types[ctype]} {ctype} (CuPy raises here)")
            else:
                types[ctype] = dtype
        for ctype, name in self.outputs:
            if len(ctype) == 1 and ctype not in types:
                raise TypeError(f"{self.name}: output {name}'s type {ctype} is bound by no input and no out= array")
        values = dict(zip((n for _, n in self.inputs), args))
        values.update({ctype: dtype.type for ctype, dtype in types.items()})  # so T(...) and U(...) convert
        shape = np.broadcast_shapes(*(np.shape(a) for a in args))
        return values, types, shape

    def dtype_of(self, ctype: str, types: dict) -> np.dtype:
        return types[ctype] if len(ctype) == 1 else np.dtype(C_TYPES.get(ctype, ctype))


class FakeElementwiseKernel(_FakeKernel):
    """cupy.ElementwiseKernel's contract, evaluated with NumPy."""

    def __init__(self, in_params: str, out_params: str, operation: str, name: str) -> None:
        super().__init__(in_params, out_params, name)
        self.operation = operation

    def __call__(self, *args):
        values, types, shape = self.bind(args)
        exec(self.operation, {}, values)
        outputs = [
            np.broadcast_to(np.asarray(values[name], dtype=self.dtype_of(ctype, types)), shape).copy()
            for ctype, name in self.outputs
        ]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


class FakeReductionKernel(_FakeKernel):
    """cupy.ReductionKernel's contract (map, reduce with a + b from 0 in ``reduce_type``, post-map), with NumPy."""

    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity, name, reduce_type=None):
        super().__init__(in_params, out_params, name)
        assert (reduce_expr, identity) == ("a + b", "0"), (reduce_expr, identity)
        assert len(self.outputs) == 1
        self.map_expr, self.post_map_expr = map_expr, post_map_expr
        self.reduce_type = reduce_type or self.outputs[0][0]  # CuPy's default: the output's type

    def __call__(self, *args, axis=None, keepdims=False, out=None):
        values, types, shape = self.bind(args, () if out is None else (out,))
        accumulate = self.dtype_of(self.reduce_type, types)
        mapped = np.broadcast_to(np.asarray(eval(self.map_expr, {}, values)), shape).astype(accumulate)
        values["a"] = mapped.sum(axis=axis, keepdims=keepdims, dtype=accumulate)
        exec(self.post_map_expr, {}, values)
        (ctype, name), = self.outputs
        result = np.asarray(values[name], dtype=self.dtype_of(ctype, types))
        if out is None:
            return result
        assert out.shape == result.shape, f"{self.name}: out= has shape {out.shape}, the result {result.shape}"
        out[...] = result
        return out


class FakeCupy:
    """numpy, plus the parts of CuPy's API that are not NumPy's; strict about everything else."""

    __name__ = "fake_cupy"
    ndarray = np.ndarray
    ElementwiseKernel = FakeElementwiseKernel
    ReductionKernel = FakeReductionKernel
    # cupy.cuda.Device().attributes, for the SM count the launch layouts aim at (an H200's)
    cuda = SimpleNamespace(Device=lambda: SimpleNamespace(attributes={"MultiProcessorCount": 132}))

    def __init__(self) -> None:
        self.host_copies = 0

    def asnumpy(self, array):
        self.host_copies += 1
        return np.array(array, copy=True)

    @staticmethod
    def is_available():
        return True

    def __getattr__(self, name):
        if name not in CUPY_NAMES:
            raise AttributeError(
                f"the CuPy stand-in has no {name!r}: CuPy 14.2 has no such attribute, so a GPU run would fail here"
            )
        try:
            return getattr(np, name)
        except AttributeError:
            raise AttributeError(f"the CuPy stand-in does not model cupy.{name} (it is CuPy's, not NumPy's)") from None


def install(monkeypatch=None) -> FakeCupy:
    """Make ``import cupy`` give a fresh stand-in (through ``monkeypatch`` in a test, else for good)."""
    fake = FakeCupy()
    if monkeypatch is not None:
        monkeypatch.setitem(sys.modules, "cupy", fake)
    else:
        sys.modules["cupy"] = fake
    return fake
