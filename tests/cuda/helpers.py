"""Shared helpers of the CUDA tests: run an op on host and on device arrays and compare.

These tests check that the CUDA kernels agree with the CPU implementation (consistency); the CPU
ops themselves are checked against independent references and finite differences in tests/.
"""

import numpy as np
from numpy.testing import assert_allclose

import nbconv as nc
import nbconv.cuda as ncu

__all__ = ["nc", "ncu", "run_both", "rng", "TOL"]

#: relative/absolute tolerance of a device result against the CPU result, by dtype.
TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5}


def rng(seed=0):
    return np.random.default_rng(seed)


def _flat(out):
    return list(out) if isinstance(out, tuple) else [out]


def run_both(name, *args, tol=None, **kwargs):
    """Call ``nbconv.<name>`` on host arrays and on their device copies; assert the device
    outputs are device arrays equal (to float rounding) to the host outputs, same dtypes and
    shapes.  Returns ``(host_outputs, device_outputs_as_host)``."""
    fn = getattr(nc, name)
    host = fn(*args, **kwargs)
    dargs = [ncu.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
    dkw = {k: ncu.to_device(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    dev = fn(*dargs, **dkw)
    hs, ds = _flat(host), _flat(dev)
    assert len(hs) == len(ds)
    got = []
    for h, d in zip(hs, ds):
        if h is None:
            assert d is None
            got.append(None)
            continue
        assert ncu.is_device_array(d), f"{name}: output is {type(d).__name__}, not on the device"
        dh = ncu.to_host(d)
        assert dh.shape == h.shape, (name, dh.shape, h.shape)
        assert dh.dtype == h.dtype, (name, dh.dtype, h.dtype)
        t = tol if tol is not None else TOL.get(h.dtype, 0)
        if h.dtype.kind == "f":
            assert_allclose(dh, h, rtol=t, atol=t, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(dh, h, err_msg=name)
        got.append(dh)
    return hs, got
