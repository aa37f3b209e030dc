"""LLVM's loop unswitching is lowered while nbconv's kernels compile, and only then."""

import os
import subprocess
import sys
import types

import numba
import numpy as np
import pytest
from numba.core import event

from nbconv import _compile_options


def _dispatcher(module):
    """A stand-in for a numba dispatcher whose function lives in ``module``."""
    return types.SimpleNamespace(py_func=types.SimpleNamespace(__module__=module))


@pytest.fixture
def thresholds(monkeypatch):
    """The thresholds the listener sets, in order (LLVM itself left alone)."""
    seen = []
    monkeypatch.setattr(_compile_options, "_set_threshold", seen.append)
    return seen


@pytest.fixture
def listening():
    """The process's listener (``import nbconv`` registers one), or one registered for the
    test when ``NBCONV_LOOP_UNSWITCH=1`` left it out."""
    mine = [x for x in event._registered["numba:compile"]
            if isinstance(x, _compile_options._NoUnswitching)]
    listener = mine[0] if mine else _compile_options._NoUnswitching()
    if not mine:
        event.register("numba:compile", listener)
    yield listener
    if not mine:
        event.unregister("numba:compile", listener)


def _compiling(listener, module):
    return event.Event("numba:compile", event.EventStatus.START,
                       data={"dispatcher": _dispatcher(module)})


def _run(listener, nesting):
    """Start and end events for ``nesting``: a list of module names, outermost first."""
    starts = [_compiling(listener, m) for m in nesting]
    for ev in starts:
        listener.on_start(ev)
    for ev in reversed(starts):
        listener.on_end(ev)


LOW, DEFAULT = _compile_options.NBCONV_THRESHOLD, _compile_options.LLVM_DEFAULT_THRESHOLD


@pytest.mark.parametrize("nesting, expected", [
    (["nbconv.kernels.pool2d"], [LOW, DEFAULT]),
    (["user_module"], []),
    # numba's own overloads and nbconv's helpers compile inside a kernel: one switch only
    (["nbconv.kernels.pool2d", "numba.np.arrayobj", "nbconv.kernels.conv.layout"],
     [LOW, DEFAULT]),
    # a user's function that calls an nbconv kernel: only the kernel's compilation is lowered
    (["user_module", "nbconv.kernels.gemm"], [LOW, DEFAULT]),
    (["numba.np.arrayobj", "user_module"], []),
])
def test_threshold_is_lowered_only_inside_nbconv_compilations(thresholds, nesting, expected):
    listener = _compile_options._NoUnswitching()
    _run(listener, nesting)
    assert thresholds == expected
    assert listener.depth == 0


def test_threshold_restored_after_a_failed_compilation(thresholds, listening):
    """numba ends the event even when compiling raises; the next user compile sees LLVM's
    default."""
    def bad(x):
        return x.no_such_attribute
    bad.__module__ = "nbconv.kernels.fake"
    with pytest.raises(numba.core.errors.TypingError):
        numba.njit(bad)(np.zeros(2))
    assert thresholds == [LOW, DEFAULT]
    assert listening.depth == 0


def test_real_compilations_switch_llvm_and_still_compute(thresholds, listening):
    """Through numba's real events: an nbconv-module function switches the threshold, a
    user function does not."""
    def kernel(x, flag):
        s = 0.0
        for i in range(x.shape[0]):
            s += x[i] if flag else -x[i]  # a loop-invariant branch: unswitching's case
        return s
    mine = types.FunctionType(kernel.__code__, kernel.__globals__, "mine")
    mine.__module__ = "nbconv.kernels.fake"
    x = np.arange(5.0)
    assert numba.njit(kernel)(x, True) == 10.0
    assert thresholds == []
    assert numba.njit(mine)(x, False) == -10.0
    assert thresholds == [LOW, DEFAULT]
    assert listening.depth == 0


def test_llvm_accepts_both_thresholds_in_one_process():
    """The real option, set back and forth (LLVM parses it more than once), around real
    compilations whose results stay right."""
    code = (
        "import numba, numpy as np\n"
        "from nbconv import _compile_options as c\n"
        "for v in (c.NBCONV_THRESHOLD, c.LLVM_DEFAULT_THRESHOLD, c.NBCONV_THRESHOLD):\n"
        "    c._set_threshold(v)\n"
        "    f = numba.njit(lambda x, k: sum([x[i] * k for i in range(x.shape[0])]))\n"
        "    assert f(np.arange(4.0), v) == 6.0 * v\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, NBCONV_CACHE="0"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("value, installed", [("0", True), ("1", False)])
def test_environment_variable_keeps_llvms_default(value, installed):
    code = ("import numba.core.event as e, nbconv\n"
            "from nbconv._compile_options import _NoUnswitching\n"
            "print(any(isinstance(x, _NoUnswitching) for x in e._registered['numba:compile']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, NBCONV_LOOP_UNSWITCH=value))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(installed)
