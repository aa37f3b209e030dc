"""Batch norm and local response norm: forward, running statistics, backward, validation."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import directional_check
from hypothesis import given
from hypothesis import strategies as st
from reference_norm import (
    batch_norm_backward_ref,
    batch_norm_ref,
    local_response_norm_backward_ref,
    local_response_norm_ref,
)

import nbconv as nc

DTYPES = [np.float32, np.float64]
seeds = st.integers(0, 2**32 - 1)


def _tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-11}


def _noncontig(a, how):
    if how == "c":
        return a
    if how == "fortran":
        return np.asfortranarray(a)
    return np.flip(a.copy(), axis=0)[::-1]  # negative strides, same values


@st.composite
def bn_shape(draw):
    nd = draw(st.sampled_from([2, 3, 4]))
    n = draw(st.integers(1, 4))
    c = draw(st.integers(1, 5))
    spatial = tuple(draw(st.lists(st.integers(1, 5), min_size=nd - 2, max_size=nd - 2)))
    if n * int(np.prod(spatial)) < 2:
        n = 2
    return (n, c) + spatial


layouts = st.sampled_from(["c", "fortran", "negative"])


# --------------------------------------------------------------------------- batch norm forward


@given(shape=bn_shape(), dtype=st.sampled_from(DTYPES), affine=st.booleans(), layout=layouts,
       momentum=st.sampled_from([0.1, 0.5, 1.0, 0.0]), seed=seeds)
def test_batch_norm_training_matches_reference(shape, dtype, affine, layout, momentum, seed):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = _noncontig((rng.standard_normal(shape) * 3 + 1).astype(dtype), layout)
    w = rng.standard_normal(C).astype(dtype) if affine else None
    b = rng.standard_normal(C).astype(dtype) if affine else None
    rm0 = rng.standard_normal(C).astype(dtype)
    rv0 = rng.uniform(0.5, 2, C).astype(dtype)
    rm, rv = rm0.copy(), rv0.copy()
    y, mean, invstd = nc.batch_norm(x, rm, rv, w, b, training=True, momentum=momentum,
                                    return_stats=True)
    ry, rmean, rvar, new_rm, new_rv = batch_norm_ref(x, rm0, rv0, w, b, True, momentum)
    tol = _tol(dtype)
    assert y.dtype == dtype and mean.dtype == dtype and invstd.dtype == dtype
    assert y.shape == shape and mean.shape == (C,) and invstd.shape == (C,)
    np.testing.assert_allclose(y, ry, rtol=tol["rtol"], atol=10 * tol["atol"])
    np.testing.assert_allclose(mean, rmean, **tol)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(rvar + 1e-5), **tol)
    # running statistics updated in place, in their own dtype
    assert rm.dtype == dtype and rv.dtype == dtype
    np.testing.assert_allclose(rm, new_rm, **tol)
    np.testing.assert_allclose(rv, new_rv, **tol)


@given(shape=bn_shape(), dtype=st.sampled_from(DTYPES), affine=st.booleans(), layout=layouts,
       seed=seeds)
def test_batch_norm_eval_matches_reference(shape, dtype, affine, layout, seed):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = _noncontig(rng.standard_normal(shape).astype(dtype), layout)
    w = rng.standard_normal(C).astype(dtype) if affine else None
    b = rng.standard_normal(C).astype(dtype) if affine else None
    rm = rng.standard_normal(C).astype(dtype)
    rv = rng.uniform(0.5, 2, C).astype(dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, mean, invstd = nc.batch_norm(x, rm, rv, w, b, training=False, eps=1e-3, return_stats=True)
    ry = batch_norm_ref(x, rm, rv, w, b, False, eps=1e-3)[0]
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ry, **_tol(dtype))
    np.testing.assert_array_equal(rm, rm0)  # eval mode never touches the running stats
    np.testing.assert_array_equal(rv, rv0)
    np.testing.assert_allclose(mean, rm0, **_tol(dtype))
    np.testing.assert_allclose(invstd, 1 / np.sqrt(rv0.astype(np.float64) + 1e-3), **_tol(dtype))


def test_batch_norm_running_stats_published_formula():
    """PyTorch's documentation: x_new = (1 - momentum) * x_running + momentum * x_batch, with
    the unbiased variance for running_var; repeated over several steps."""
    rng = np.random.default_rng(0)
    rm, rv = np.zeros(3), np.ones(3)
    erm, erv = np.zeros(3), np.ones(3)
    for step in range(4):
        x = rng.standard_normal((5, 3, 2, 2)) * (step + 1) + step
        nc.batch_norm(x, rm, rv, training=True, momentum=0.2)
        xs = x.transpose(1, 0, 2, 3).reshape(3, -1)
        erm = 0.8 * erm + 0.2 * xs.mean(axis=1)
        erv = 0.8 * erv + 0.2 * xs.var(axis=1, ddof=1)
        np.testing.assert_allclose(rm, erm, rtol=1e-12)
        np.testing.assert_allclose(rv, erv, rtol=1e-12)


def test_batch_norm_running_stats_views_updated_in_place():
    buf = np.zeros((2, 4))
    rm = buf[0, ::2]  # non-contiguous view
    rv = buf[1, ::2]
    rv[:] = 1.0
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    nc.batch_norm(x, rm, rv, training=True, momentum=0.5)
    np.testing.assert_allclose(buf[0, ::2], [1.0, 2.0])  # 0.5 * mean
    np.testing.assert_allclose(buf[1, ::2], [0.5 + 0.5 * 2.0, 0.5 + 0.5 * 8.0])
    assert np.all(buf[:, 1::2] == 0)


def test_batch_norm_training_without_running_stats_and_float32_buffers():
    x = np.random.default_rng(1).standard_normal((6, 3)).astype(np.float32)
    y = nc.batch_norm(x, None, None, training=True)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-6)
    rm, rv = np.zeros(3, np.float64), np.ones(3, np.float64)  # buffers may differ from x's dtype
    nc.batch_norm(x, rm, rv, training=True)
    assert rm.dtype == np.float64
    np.testing.assert_allclose(rm, 0.1 * x.astype(np.float64).mean(axis=0), rtol=1e-6)


def test_batch_norm_nan_channel():
    x = np.ones((4, 2, 3))
    x[1, 0, 2] = np.nan
    x[:, 1] = np.arange(12.0).reshape(4, 3)
    rm, rv = np.zeros(2), np.ones(2)
    y = nc.batch_norm(x, rm, rv, training=True)
    assert np.all(np.isnan(y[:, 0])) and np.all(np.isfinite(y[:, 1]))
    assert np.isnan(rm[0]) and np.isfinite(rm[1])
    ye = nc.batch_norm(x, np.zeros(2), np.ones(2))
    assert np.isnan(ye[1, 0, 2]) and np.isfinite(ye[0, 0, 0])


def test_batch_norm_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    for shape in [(4, 3), (3, 4, 5), (2, 3, 4, 5)]:
        C = shape[1]
        x = rng.standard_normal(shape) * 2 + 0.5
        w, b = rng.standard_normal(C), rng.standard_normal(C)
        rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)
        trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
        tx = torch.from_numpy(x).requires_grad_()
        tw = torch.from_numpy(w).requires_grad_()
        tb = torch.from_numpy(b).requires_grad_()
        ty = F.batch_norm(tx, trm, trv, tw, tb, training=True, momentum=0.3, eps=1e-4)
        y, mean, invstd = nc.batch_norm(x, rm, rv, w, b, training=True, momentum=0.3, eps=1e-4,
                                        return_stats=True)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12)
        np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)
        dy = rng.standard_normal(shape)
        ty.backward(torch.from_numpy(dy))
        dx, dw, db = nc.batch_norm_backward(dy, x, mean, invstd, w, training=True)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-9, atol=1e-11)
        te = F.batch_norm(torch.from_numpy(x), trm, trv, tw.detach(), tb.detach(), training=False)
        np.testing.assert_allclose(nc.batch_norm(x, rm, rv, w, b), te.numpy(), rtol=1e-10,
                                   atol=1e-12)


# --------------------------------------------------------------------------- batch norm backward


@given(shape=bn_shape(), dtype=st.sampled_from(DTYPES), affine=st.booleans(),
       training=st.booleans(), layout=layouts, seed=seeds)
def test_batch_norm_backward_matches_staged_reference(shape, dtype, affine, training, layout,
                                                      seed):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    dy = _noncontig(rng.standard_normal(shape).astype(dtype), layout)
    w = rng.standard_normal(C).astype(dtype) if affine else None
    rm = rng.standard_normal(C).astype(dtype)
    rv = rng.uniform(0.5, 2, C).astype(dtype)
    eps = 1e-2  # keeps float32 well-conditioned when a channel has two nearly equal values
    _, mean, invstd = nc.batch_norm(x, rm, rv, w, None, training=training, eps=eps,
                                    return_stats=True)
    dx, dw, db = nc.batch_norm_backward(dy, x, mean, invstd, w, training=training)
    # reference from the float64 statistics (running stats as the forward pass saw them)
    rdx, rdw, rdb = batch_norm_backward_ref(dy, x, w, training, eps, running_mean=mean,
                                            running_var=1 / invstd.astype(np.float64) ** 2 - eps)
    tol = {"rtol": 2e-3, "atol": 2e-3} if dtype == np.float32 else _tol(dtype)
    assert dx.dtype == dtype and dx.shape == shape
    np.testing.assert_allclose(dx, rdx, **tol)
    if affine:
        assert dw.dtype == dtype and db.dtype == dtype and dw.shape == (C,)
        np.testing.assert_allclose(dw, rdw, **tol)
        np.testing.assert_allclose(db, rdb, **tol)
    else:
        assert dw is None and db is None


@pytest.mark.parametrize("shape", [(5, 3), (4, 2, 5), (3, 2, 3, 4)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_gradcheck(shape, training, affine):
    rng = np.random.default_rng(len(shape))
    C = shape[1]
    x = rng.standard_normal(shape) * 2 + 1
    w = rng.standard_normal(C) if affine else None
    b = rng.standard_normal(C) if affine else None
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)
    dy = rng.standard_normal(shape)
    _, mean, invstd = nc.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training,
                                    return_stats=True)
    dx, dw, db = nc.batch_norm_backward(dy, x, mean, invstd, w, training=training)

    if affine:
        def f(xx, ww, bb):
            # training: the batch statistics are recomputed from the perturbed x
            return nc.batch_norm(xx, rm.copy(), rv.copy(), ww, bb, training=training)

        directional_check(f, [x, w, b], dy, [dx, dw, db])
    else:
        assert dw is None and db is None
        directional_check(lambda xx: nc.batch_norm(xx, rm.copy(), rv.copy(), training=training),
                          [x], dy, [dx])


def test_batch_norm_backward_eval_is_scaled_dy():
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 2, 4))
    w, invstd, mean = np.array([2.0, -1.0]), np.array([0.5, 3.0]), np.array([0.1, -0.2])
    dx, dw, db = nc.batch_norm_backward(dy, x, mean, invstd, w, training=False)
    np.testing.assert_allclose(dx, dy * (w * invstd)[None, :, None])
    xhat = (x - mean[None, :, None]) * invstd[None, :, None]
    np.testing.assert_allclose(dw, (dy * xhat).sum(axis=(0, 2)))
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2)))
    dx2, dw2, db2 = nc.batch_norm_backward(dy, x, mean, invstd, None, training=False)
    np.testing.assert_allclose(dx2, dy * invstd[None, :, None])
    assert dw2 is None and db2 is None


def test_batch_norm_validation():
    x = np.ones((4, 3, 2))
    rm, rv = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match=r"batch_norm: argument 'running_mean' is None"):
        nc.batch_norm(x, None, rv)
    with pytest.raises(ValueError, match=r"batch_norm: argument 'running_var' is None"):
        nc.batch_norm(x, rm, None, training=False)
    with pytest.raises(ValueError, match=r"batch_norm: argument 'weight' must have shape \(3,\)"):
        nc.batch_norm(x, rm, rv, weight=np.ones(2))
    with pytest.raises(ValueError, match=r"batch_norm: argument 'bias' .*\(4, 3, 2\)"):
        nc.batch_norm(x, rm, rv, bias=np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"batch_norm: argument 'running_mean' must have shape"):
        nc.batch_norm(x, np.zeros(4), rv)
    with pytest.raises(ValueError, match=r"batch_norm: argument 'running_var' must have shape"):
        nc.batch_norm(x, rm, np.ones(2), training=True)
    with pytest.raises(ValueError, match=r"argument 'x' must be 2-D .* \(1, 2, 3, 4, 5"):
        nc.batch_norm(np.ones((1, 2, 3, 4, 5)), np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match=r"batch_norm: argument 'x' must be 2-D"):
        nc.batch_norm(np.ones(3), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*argument 'x'"):
        nc.batch_norm(np.ones((1, 3)), rm, rv, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: argument 'momentum' is None"):
        nc.batch_norm(x, rm, rv, training=True, momentum=None)
    with pytest.raises(ValueError, match=r"batch_norm: argument 'eps'"):
        nc.batch_norm(x, rm, rv, eps=-1.0)
    with pytest.raises(TypeError, match=r"batch_norm: argument 'running_mean' must be a numpy"):
        nc.batch_norm(x, [0.0, 0.0, 0.0], rv, training=True)
    with pytest.raises(TypeError, match=r"batch_norm: argument 'running_var' must be float32"):
        nc.batch_norm(x, rm, np.ones(3, np.int64), training=True)
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=r"batch_norm: argument 'running_mean' is read-only"):
        nc.batch_norm(x, frozen, rv, training=True)
    # nothing was updated by the failing calls
    np.testing.assert_array_equal(rm, 0)
    np.testing.assert_array_equal(rv, 1)
    # eval mode accepts lists for the running stats (read only)
    assert nc.batch_norm(x, [0.0] * 3, [1.0] * 3).shape == x.shape


def test_batch_norm_backward_validation():
    x = np.ones((4, 3))
    m, s = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match=r"batch_norm_backward: argument 'dy' has shape \(4, 2\)"):
        nc.batch_norm_backward(np.ones((4, 2)), x, m, s)
    with pytest.raises(ValueError, match=r"batch_norm_backward: argument 'invstd' must have"):
        nc.batch_norm_backward(np.ones((4, 3)), x, m, np.ones(4))
    with pytest.raises(ValueError, match=r"batch_norm_backward: argument 'weight' must have"):
        nc.batch_norm_backward(np.ones((4, 3)), x, m, s, np.ones(1))


def test_batch_norm_int_input_and_dtype():
    x = np.arange(12).reshape(4, 3)
    y = nc.batch_norm(x, None, None, training=True)
    assert y.dtype == np.float32
    y64 = nc.batch_norm(x.astype(np.float64), np.zeros(3, np.float32), np.ones(3, np.float32))
    assert y64.dtype == np.float64


# --------------------------------------------------------------------------- local response norm


@st.composite
def lrn_case(draw):
    nd = draw(st.sampled_from([3, 4]))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 8)))
    shape += tuple(draw(st.lists(st.integers(1, 5), min_size=nd - 2, max_size=nd - 2)))
    size = draw(st.integers(1, 7))
    alpha = draw(st.sampled_from([1e-4, 0.1, 1.0]))
    beta = draw(st.sampled_from([0.75, 0.5, 1.0, 2.0]))
    k = draw(st.sampled_from([1.0, 2.0, 0.5]))
    return shape, size, alpha, beta, k


@given(case=lrn_case(), dtype=st.sampled_from(DTYPES), layout=layouts, seed=seeds)
def test_lrn_matches_reference(case, dtype, layout, seed):
    shape, size, alpha, beta, k = case
    rng = np.random.default_rng(seed)
    x = _noncontig((rng.standard_normal(shape) * 2).astype(dtype), layout)
    y = nc.local_response_norm(x, size, alpha, beta, k)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, local_response_norm_ref(x, size, alpha, beta, k), **_tol(dtype))
    dy = rng.standard_normal(shape).astype(dtype)
    dx = nc.local_response_norm_backward(dy, x, size, alpha, beta, k)
    assert dx.dtype == dtype and dx.shape == shape
    np.testing.assert_allclose(
        dx, local_response_norm_backward_ref(dy, x, size, alpha, beta, k), **_tol(dtype)
    )


def test_lrn_large_spatial_blocks():
    # more positions than one kernel block: several (image, block) iterations per image
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 6, 23, 29)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(nc.local_response_norm(x, 5, 0.5, 0.75, 2.0),
                               local_response_norm_ref(x, 5, 0.5, 0.75, 2.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nc.local_response_norm_backward(dy, x, 5, 0.5, 0.75, 2.0),
                               local_response_norm_backward_ref(dy, x, 5, 0.5, 0.75, 2.0),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5, 7), (2, 6, 3, 4)])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 9])
def test_lrn_gradcheck(shape, size):
    rng = np.random.default_rng(size)
    x = rng.standard_normal(shape) * 2
    dy = rng.standard_normal(shape)
    args = (size, 0.3, 0.75, 1.5)
    dx = nc.local_response_norm_backward(dy, x, *args)
    directional_check(lambda a: nc.local_response_norm(a, *args), [x], dy, [dx])


def test_lrn_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(4)
    for shape in [(2, 7, 9), (2, 6, 4, 5)]:
        for size in (1, 2, 3, 5, 8):
            x = rng.standard_normal(shape) * 3
            want = F.local_response_norm(torch.from_numpy(x), size, 1e-2, 0.75, 2.0).numpy()
            np.testing.assert_allclose(nc.local_response_norm(x, size, 1e-2, 0.75, 2.0), want,
                                       rtol=1e-12, atol=1e-14)
    # default arguments too
    x = rng.standard_normal((1, 4, 3, 3)) * 100
    want = F.local_response_norm(torch.from_numpy(x), 3).numpy()
    np.testing.assert_allclose(nc.local_response_norm(x, 3), want, rtol=1e-12)


def test_lrn_nan_propagates_within_window():
    x = np.ones((1, 5, 2))
    x[0, 2, 1] = np.nan
    y = nc.local_response_norm(x, 3)
    # channels 1, 2, 3 at position 1 see the NaN; everything else is finite
    assert np.all(np.isnan(y[0, 1:4, 1]))
    assert np.isfinite(y[0, 0, 1]) and np.isfinite(y[0, 4, 1]) and np.all(np.isfinite(y[0, :, 0]))


def test_lrn_validation():
    with pytest.raises(ValueError, match=r"local_response_norm: argument 'x' must be at least 3-D"):
        nc.local_response_norm(np.ones((2, 3)), 2)
    with pytest.raises(ValueError, match=r"local_response_norm: argument 'size' must be >= 1"):
        nc.local_response_norm(np.ones((2, 3, 4)), 0)
    with pytest.raises(TypeError, match=r"local_response_norm: argument 'size' must be an int"):
        nc.local_response_norm(np.ones((2, 3, 4)), 2.5)
    with pytest.raises(TypeError, match=r"local_response_norm: argument 'beta'"):
        nc.local_response_norm(np.ones((2, 3, 4)), 2, beta=None)
    with pytest.raises(ValueError, match=r"local_response_norm_backward: argument 'dy' has shape"):
        nc.local_response_norm_backward(np.ones((2, 3, 5)), np.ones((2, 3, 4)), 2)
    assert nc.local_response_norm(np.ones((2, 3, 4), np.int16), 2).dtype == np.float32


@pytest.mark.parametrize("momentum", [-1.2, 1.5, 0.0, 1.0])
def test_batch_norm_takes_any_finite_momentum_like_torch(momentum):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((4, 3, 5))
    rm, rv = np.full(3, 0.5), np.full(3, 2.0)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    y = nc.batch_norm(x, rm, rv, training=True, momentum=momentum)
    ty = torch.nn.functional.batch_norm(torch.tensor(x), trm, trv, training=True,
                                        momentum=momentum)
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="argument 'momentum' must be a finite number"):
        nc.batch_norm(x, rm, rv, training=True, momentum=float("inf"))
