"""correlate2d / convolve2d on device arrays agree with the CPU (SciPy drop-in) functions."""

import numpy as np
import pytest
from helpers import nc, ncu, rng, run_both


@pytest.mark.parametrize("name", ["correlate2d", "convolve2d"])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
def test_modes_boundaries(name, mode, boundary):
    r = rng(30)
    a, b = r.standard_normal((4, 5)), r.standard_normal((2, 3))
    run_both(name, a, b, mode=mode, boundary=boundary, fillvalue=1.5)


@pytest.mark.parametrize("name", ["correlate2d", "convolve2d"])
def test_in2_larger_and_float32(name):
    r = rng(31)
    a = r.standard_normal((2, 3)).astype(np.float32)
    b = r.standard_normal((3, 4)).astype(np.float32)
    run_both(name, a, b, mode="valid")
    run_both(name, a, b, mode="same", boundary="symm")
    run_both(name, a, b, mode="full", boundary="wrap")


def test_integer_inputs_rejected_on_device():
    a = ncu.to_device(np.ones((3, 3), np.int64))
    with pytest.raises(TypeError, match="only float32/float64"):
        nc.correlate2d(a, a)
