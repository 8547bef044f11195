"""Shared fixtures: the devices a test can run on, and the "spy" backend.

``backend_device`` runs a test once per device: "cpu" always, and "cuda" when
CuPy compiles and runs a test kernel on a GPU; otherwise the CUDA case is
reported as SKIPPED, with the reason (no CuPy, no GPU, no kernel compiler) and
the command that installs what is missing.

``spy_device`` registers a test-only device, "spy", for the duration of one
test. It computes on the CPU with NumPy, but through a wrapper that lets a
test prove that the engine does all its array work through ``backend.xp``:

* its arrays are ``SpyArray``, a distinct ndarray subclass. Every result of
  the spy's ``xp`` is a SpyArray, so a plain ``numpy.ndarray`` found in a
  tensor's ``.data`` or ``.grad`` was made by someone reaching around the
  backend;
* a SpyArray refuses to be combined with a plain ndarray in arithmetic
  (``LeakError``), and refuses NumPy functions (``numpy.concatenate``,
  ``numpy.where``...) called on it from anywhere but the spy's own ``xp``
  (``ReachAroundError``);
* like the GPU backend, it checks no values before an op and returns arrays
  (never NumPy scalars) from every operation; inside ``spy.no_host_transfers()``
  any conversion to a Python number (``bool``, ``int``, ``float``, ``.item()``)
  or copy to NumPy raises ``HostTransferError``: on a GPU each of those is a
  device-to-host copy and a wait;
* ``spy.calls`` counts, by name, every ``xp`` function the engine used.
"""
from __future__ import annotations

import collections
import contextlib
from typing import Any

import numpy
import pytest
from hypothesis import settings

from tinyad import backend as backend_module
from tinyad.backend import Backend, cuda_unavailable_reason

# ---------------------------------------------------------------------------
# every available device
# ---------------------------------------------------------------------------


def _cuda_skip_reason() -> str | None:
    """None where device "cuda" runs a kernel; otherwise the reason and the install command."""
    try:
        return cuda_unavailable_reason()
    except Exception as error:  # a broken CUDA install must skip, not error, the CUDA cases
        return f"device 'cuda' failed while being checked ({type(error).__name__}: {error})"


CUDA_SKIP_REASON = _cuda_skip_reason()
CUDA_AVAILABLE = CUDA_SKIP_REASON is None

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA_AVAILABLE, reason=CUDA_SKIP_REASON or ""))]


@pytest.fixture(params=DEVICES)
def backend_device(request) -> str:
    """Each device this machine can run: "cpu", and "cuda" (skipped without CuPy and a GPU)."""
    return request.param


@pytest.fixture
def cuda_device() -> str:
    """"cuda", or a skip saying why device "cuda" is not usable here."""
    if not CUDA_AVAILABLE:
        pytest.skip(CUDA_SKIP_REASON)
    return "cuda"


# ---------------------------------------------------------------------------
# the spy backend
# ---------------------------------------------------------------------------


class LeakError(AssertionError):
    """A plain numpy.ndarray met a spy array in an operation."""


class ReachAroundError(AssertionError):
    """A NumPy function was called on a spy array from outside the spy's xp."""


class HostTransferError(AssertionError):
    """A spy array was turned into a host value where no transfer is allowed."""


_state = {"inside_xp": 0, "forbid_host": 0}


def _check_host_transfer(what: str) -> None:
    if _state["forbid_host"]:
        raise HostTransferError(f"{what} of a spy array: on a GPU this copies to the host and waits for the device")


class SpyArray(numpy.ndarray):
    """A NumPy array that only the spy backend makes."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        # "at" takes an index as its second input; indices may be plain arrays
        checked = [x for i, x in enumerate(inputs) if not (method == "at" and i == 1)]
        for x in checked:
            if isinstance(x, numpy.ndarray) and not isinstance(x, SpyArray):
                raise LeakError(
                    f"numpy.{ufunc.__name__}.{method}: a plain numpy.ndarray {x.shape} {x.dtype} was combined "
                    "with a spy array; it was made without going through backend.xp"
                )
        args = [x.view(numpy.ndarray) if isinstance(x, SpyArray) else x for x in inputs]
        if out is not None:
            kwargs["out"] = tuple(o.view(numpy.ndarray) if isinstance(o, SpyArray) else o for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if method == "at":
            return None
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _to_spy(result)

    def __array_function__(self, func, types, args, kwargs):
        if not _state["inside_xp"]:
            raise ReachAroundError(
                f"numpy.{func.__name__} was called on a spy array directly instead of through backend.xp"
            )
        return super().__array_function__(func, types, args, kwargs)

    def __repr__(self) -> str:
        return f"SpyArray({numpy.asarray(self)!r})"

    # the conversions that, on a GPU, copy data back to the host
    def __bool__(self) -> bool:
        _check_host_transfer("bool()")
        return bool(self.view(numpy.ndarray))

    def __int__(self) -> int:
        _check_host_transfer("int()")
        return int(self.view(numpy.ndarray))

    def __float__(self) -> float:
        _check_host_transfer("float()")
        return float(self.view(numpy.ndarray))

    def __index__(self) -> int:
        _check_host_transfer("an index made")
        return self.view(numpy.ndarray).__index__()

    def item(self, *args: Any) -> Any:
        _check_host_transfer(".item()")
        return self.view(numpy.ndarray).item(*args)

    def tolist(self) -> Any:
        _check_host_transfer(".tolist()")
        return self.view(numpy.ndarray).tolist()


def _to_spy(result: Any) -> Any:
    """Every array (and NumPy scalar, as CuPy has none) a spy function returns, as a SpyArray."""
    if isinstance(result, SpyArray):
        return result
    if isinstance(result, numpy.ndarray):
        return result.view(SpyArray)
    if isinstance(result, numpy.generic):
        return numpy.asarray(result).view(SpyArray)
    if isinstance(result, tuple):
        return tuple(_to_spy(r) for r in result)
    if isinstance(result, list):
        return [_to_spy(r) for r in result]
    return result


class _SpyFunction:
    """A NumPy function (or ufunc, with its methods such as ``add.at``) that records its calls."""

    def __init__(self, namespace: "SpyNamespace", name: str, target: Any) -> None:
        self._namespace, self._name, self._target = namespace, name, target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._namespace.calls[self._name] += 1
        _state["inside_xp"] += 1
        try:
            return _to_spy(self._target(*args, **kwargs))
        finally:
            _state["inside_xp"] -= 1

    def __getattr__(self, attribute: str) -> Any:
        inner = getattr(self._target, attribute)
        if callable(inner):
            return _SpyFunction(self._namespace, f"{self._name}.{attribute}", inner)
        return inner


class SpyNamespace:
    """``numpy`` as seen through the spy: same functions, SpyArray results, every call counted."""

    __name__ = "spy_numpy"
    ndarray = SpyArray

    def __init__(self) -> None:
        self.calls: collections.Counter = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(numpy, name)
        if isinstance(target, type) or not callable(target):
            return target  # dtypes (numpy.float64) and constants pass through
        return _SpyFunction(self, name, target)


class SpyBackend(Backend):
    """A second CPU backend, for tests: NumPy behind a recording wrapper, with the GPU's rules."""

    checks_values = False  # as on the GPU: no value is read back to decide anything

    def __init__(self) -> None:
        super().__init__("spy", SpyNamespace())
        self.host_copies = 0

    @property
    def calls(self) -> collections.Counter:
        return self.xp.calls

    def to_numpy(self, array: Any) -> numpy.ndarray:
        _check_host_transfer("a copy to NumPy")
        self.host_copies += 1
        return numpy.array(array.view(numpy.ndarray) if isinstance(array, SpyArray) else array, copy=True)

    @contextlib.contextmanager
    def no_host_transfers(self):
        """Inside: any host conversion of a spy array raises HostTransferError."""
        _state["forbid_host"] += 1
        try:
            yield
        finally:
            _state["forbid_host"] -= 1


@pytest.fixture
def spy_device(monkeypatch) -> SpyBackend:
    """Register the "spy" device for one test; yields its backend (``.calls``, ``.no_host_transfers()``)."""
    spy = SpyBackend()
    monkeypatch.setitem(backend_module._BACKENDS, "spy", spy)
    yield spy
    _state["inside_xp"] = _state["forbid_host"] = 0


# ---------------------------------------------------------------------------
# hypothesis profiles
# ---------------------------------------------------------------------------
#
# "ci" (loaded here, the default) sizes tests/test_fuzz_vs_torch.py to run in
# about a minute on two cores; every other test file names its own
# max_examples, so the profile changes only the fuzz tests. For thousands of
# random programs:
#
#     python -m pytest tests/test_fuzz_vs_torch.py --hypothesis-profile=long
#
# (hypothesis' pytest plugin loads the named profile after this file ran).
# ci: the same 1,000 programs every run (derandomize), so CI is never decided by a
# fresh draw; long: thousands of fresh random programs, to look for new disagreements
settings.register_profile("ci", max_examples=1000, deadline=None, print_blob=True, derandomize=True)
settings.register_profile("long", max_examples=5000, deadline=None, print_blob=True)
settings.load_profile("ci")
