"""``nc.interpolate`` / ``interpolate_backward`` and ``nn.Upsample`` (issue 27): nearest,
nearest-exact, linear and bilinear resizing, forward and input gradient, layers, recording and
model files.

References: PyTorch (``torch.nn.functional.interpolate`` values and autograd gradients, float64)
where torch is installed; without it, float64 central differences (``nbconv.testing.gradcheck``)
and an explicit-loop reference written here from PyTorch's documented index rules (it never
calls nbconv).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import nbconv as nc
from nbconv import nn
from nbconv.testing import gradcheck

F64 = np.float64


def _rng(seed=0):
    return np.random.default_rng(seed)


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------- loop reference

def _src_nearest(i, n, o, sf, exact):
    """PyTorch's 2-D nearest source index (legacy rule: copy when o == n, halve when
    o == 2n)."""
    if not exact and o == n:
        return i
    if not exact and o == 2 * n:
        return i // 2
    r = np.float64(1.0 / sf) if sf is not None else np.float64(n) / o
    return min(int(math.floor(((i + 0.5) if exact else i) * r)), n - 1)


def _src_linear(i, n, o, sf, align_corners):
    """(i0, i1, l0, l1) of output ``i``: PyTorch's source coordinate and its two neighbours."""
    if align_corners:
        s = i * (n - 1) / (o - 1) if o > 1 else 0.0
    elif o == n:
        s = float(i)
    else:
        r = 1.0 / sf if sf is not None else n / o
        s = max((i + 0.5) * r - 0.5, 0.0)
    i0 = min(int(math.floor(s)), n - 1)
    l1 = min(max(s - i0, 0.0), 1.0)
    return i0, i0 + (i0 < n - 1), 1.0 - l1, l1


def _ref(x, out, sf, mode, align_corners):
    """Loop reference of ``interpolate`` for (N, C, H, W) (``sf`` per axis or None)."""
    N, C, H, W = x.shape
    OH, OW = out
    y = np.zeros((N, C, OH, OW))
    sfh, sfw = sf if sf is not None else (None, None)
    for i in range(OH):
        for j in range(OW):
            if mode in ("nearest", "nearest-exact"):
                ex = mode == "nearest-exact"
                y[:, :, i, j] = x[:, :, _src_nearest(i, H, OH, sfh, ex),
                                  _src_nearest(j, W, OW, sfw, ex)]
            else:
                h0, h1, a0, a1 = _src_linear(i, H, OH, sfh, align_corners)
                w0, w1, b0, b1 = _src_linear(j, W, OW, sfw, align_corners)
                y[:, :, i, j] = (a0 * (b0 * x[:, :, h0, w0] + b1 * x[:, :, h0, w1])
                                 + a1 * (b0 * x[:, :, h1, w0] + b1 * x[:, :, h1, w1]))
    return y


CASES_2D = [
    ("nearest", None, dict(size=(7, 11))),
    ("nearest", None, dict(size=(2, 3))),
    ("nearest", None, dict(scale_factor=2)),
    ("nearest", None, dict(scale_factor=1.5)),
    ("nearest", None, dict(scale_factor=0.5)),
    ("nearest", None, dict(scale_factor=(1.7, 0.6))),
    ("nearest", None, dict(scale_factor=1.1)),  # o == n but r != 1: PyTorch copies
    ("nearest-exact", None, dict(size=(8, 4))),
    ("nearest-exact", None, dict(scale_factor=1.5)),
    ("bilinear", False, dict(size=(9, 13))),
    ("bilinear", False, dict(size=(3, 2))),
    ("bilinear", False, dict(scale_factor=2)),
    ("bilinear", False, dict(scale_factor=1.5)),
    ("bilinear", False, dict(scale_factor=0.5)),
    ("bilinear", False, dict(scale_factor=(2.3, 0.7))),
    ("bilinear", False, dict(scale_factor=1.1)),
    ("bilinear", True, dict(size=(9, 13))),
    ("bilinear", True, dict(size=(1, 4))),
    ("bilinear", True, dict(scale_factor=0.5)),
    ("bilinear", True, dict(scale_factor=(3, 1.5))),
]


def _out_size(in_sizes, kw):
    if "size" in kw:
        s = kw["size"]
        return tuple(s) if isinstance(s, (tuple, list)) else (s,) * len(in_sizes)
    sf = kw["scale_factor"]
    sf = tuple(sf) if isinstance(sf, (tuple, list)) else (sf,) * len(in_sizes)
    return tuple(math.floor(n * s) for n, s in zip(in_sizes, sf))


@pytest.mark.parametrize("mode,ac,kw", CASES_2D)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 6, 3)])
def test_forward_matches_loop_reference(mode, ac, kw, shape):
    x = _rng(1).standard_normal(shape)
    out = _out_size(shape[2:], kw)
    sf = None
    if "scale_factor" in kw:
        s = kw["scale_factor"]
        sf = tuple(s) if isinstance(s, (tuple, list)) else (s, s)
    y = nc.interpolate(x, mode=mode, align_corners=ac, **kw)
    assert y.shape == shape[:2] + out and y.dtype == F64
    np.testing.assert_allclose(y, _ref(x, out, sf, mode, ac), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("mode,ac,kw", CASES_2D)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 6, 3), (3, 1, 1, 4)])
def test_forward_and_gradient_match_torch(mode, ac, kw, shape):
    torch = pytest.importorskip("torch")
    x = _rng(2).standard_normal(shape)
    if min(_out_size(shape[2:], kw)) < 1:  # PyTorch refuses an empty output too
        with pytest.raises(ValueError, match="argument 'scale_factor'"):
            nc.interpolate(x, mode=mode, align_corners=ac, **kw)
        return
    t = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.interpolate(t, mode=mode, align_corners=ac, **kw)
    dy = _rng(3).standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(dy))
    y = nc.interpolate(x, mode=mode, align_corners=ac, **kw)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-13)
    dx = nc.interpolate_backward(dy, shape, mode=mode, align_corners=ac, **kw)
    assert dx.shape == shape and dx.dtype == F64
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-12, atol=1e-13)


def test_sweep_of_sizes_matches_torch():
    """Odd sizes up and down, every mode, index edge cases of the float rules."""
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    rng = _rng(4)
    for H, W in ((1, 1), (2, 3), (5, 9), (7, 4), (10, 13)):
        x = rng.standard_normal((1, 2, H, W))
        t = torch.from_numpy(x)
        for mode, ac in (("nearest", None), ("nearest-exact", None), ("bilinear", False),
                         ("bilinear", True)):
            for oh, ow in ((1, 2), (3, 5), (11, 7), (20, 26), (H, 2 * W)):
                got = nc.interpolate(x, (oh, ow), mode=mode, align_corners=ac)
                want = tF.interpolate(t, (oh, ow), mode=mode, align_corners=ac).numpy()
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13,
                                           err_msg=f"{mode} {ac} {(H, W)}->{(oh, ow)}")
            for s in (1 / 3, 0.3, 0.7, 1.1, 2.3, 2.5, 3.0):
                if math.floor(H * s) < 1 or math.floor(W * s) < 1:
                    continue
                got = nc.interpolate(x, scale_factor=s, mode=mode, align_corners=ac)
                want = tF.interpolate(t, scale_factor=s, mode=mode, align_corners=ac).numpy()
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13,
                                           err_msg=f"{mode} {ac} {(H, W)} x{s}")


@pytest.mark.parametrize("mode,ac", [("nearest", None), ("nearest-exact", None),
                                     ("linear", False), ("linear", True)])
@pytest.mark.parametrize("kw", [dict(size=11), dict(size=3), dict(size=(7,)),
                                dict(scale_factor=2), dict(scale_factor=0.6),
                                dict(scale_factor=2.5), dict(scale_factor=1.1),
                                dict(scale_factor=2.1)])
def test_1d_matches_torch(mode, ac, kw):
    torch = pytest.importorskip("torch")
    x = _rng(5).standard_normal((2, 3, 7))
    t = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.interpolate(t, mode=mode, align_corners=ac, **kw)
    dy = _rng(6).standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(nc.interpolate(x, mode=mode, align_corners=ac, **kw),
                               ty.detach().numpy(), rtol=1e-12, atol=1e-13)
    want = t.grad.numpy()
    if mode == "nearest" and "scale_factor" in kw:
        # PyTorch's 1-D nearest backward copies (o == n) or halves (o == 2n) the index where
        # its forward pass does not (scale factors 1.1 and 2.1 here): the reference is the
        # adjoint of PyTorch's forward, the source index of each output read from it
        src = torch.nn.functional.interpolate(
            torch.arange(7, dtype=torch.float64).reshape(1, 1, 7), **kw).numpy()[0, 0]
        want = np.zeros_like(x)
        for j, i in enumerate(src.astype(int)):
            want[..., i] += dy[..., j]
    np.testing.assert_allclose(nc.interpolate_backward(dy, x.shape, mode=mode,
                                                       align_corners=ac, **kw),
                               want, rtol=1e-12, atol=1e-13)


def test_pytorch_1d_nearest_backward_disagrees_with_its_forward():
    """The case above, shown: PyTorch's gradient is not the adjoint of its own 1-D forward
    (n = 3, scale 1.1: forward reads [0, 0, 1], backward sends to [0, 1, 2]); nbconv's is."""
    torch = pytest.importorskip("torch")
    t = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.interpolate(t, scale_factor=1.1)
    y.backward(torch.tensor([[[1.0, 10.0, 100.0]]], dtype=torch.float64))
    assert y.detach().numpy().tolist() == [[[1.0, 1.0, 2.0]]]
    if t.grad.numpy().tolist() != [[[1.0, 10.0, 100.0]]]:
        pytest.skip("PyTorch's 1-D nearest backward now agrees with its forward")
    assert nc.interpolate(t.detach().numpy(), scale_factor=1.1).tolist() == [[[1.0, 1.0, 2.0]]]
    dx = nc.interpolate_backward(np.array([[[1.0, 10.0, 100.0]]]), (1, 1, 3), scale_factor=1.1)
    assert dx.tolist() == [[[11.0, 100.0, 0.0]]]
    for s in (1.1, 2.1):
        assert gradcheck(lambda a, s=s: nc.interpolate(a, scale_factor=s),
                         _rng(25).random((2, 2, 3)),
                         lambda dy, a, s=s: nc.interpolate_backward(dy, a.shape,
                                                                    scale_factor=s))


def test_recompute_scale_factor_matches_torch():
    torch = pytest.importorskip("torch")
    x = _rng(7).standard_normal((1, 2, 5, 7))
    for mode in ("nearest", "bilinear"):
        got = nc.interpolate(x, scale_factor=1.7, mode=mode, recompute_scale_factor=True)
        want = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=1.7, mode=mode,
                                               recompute_scale_factor=True).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_large_input_parallel_path_matches_torch():
    """Above ``SERIAL_BELOW`` elements the parallel kernels run."""
    torch = pytest.importorskip("torch")
    x = _rng(8).standard_normal((2, 16, 48, 40))
    t = torch.tensor(x, requires_grad=True)
    for mode, ac, kw in (("nearest", None, dict(scale_factor=2)),
                         ("bilinear", False, dict(size=(97, 83))),
                         ("bilinear", True, dict(scale_factor=0.5))):
        ty = torch.nn.functional.interpolate(t, mode=mode, align_corners=ac, **kw)
        dy = _rng(9).standard_normal(tuple(ty.shape))
        t.grad = None
        ty.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(nc.interpolate(x, mode=mode, align_corners=ac, **kw),
                                   ty.detach().numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(
            nc.interpolate_backward(dy, x.shape, mode=mode, align_corners=ac, **kw),
            t.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode,ac,kw", [("nearest", None, dict(scale_factor=2)),
                                        ("bilinear", False, dict(size=(7, 3))),
                                        ("bilinear", True, dict(scale_factor=1.5))])
def test_dtypes(dtype, mode, ac, kw):
    x = _rng(10).standard_normal((2, 3, 4, 5)).astype(dtype)
    y = nc.interpolate(x, mode=mode, align_corners=ac, **kw)
    assert y.dtype == dtype
    ref = nc.interpolate(x.astype(F64), mode=mode, align_corners=ac, **kw)
    np.testing.assert_allclose(y, ref, **_tol(dtype))
    dy = _rng(11).standard_normal(y.shape).astype(dtype)
    dx = nc.interpolate_backward(dy, x.shape, mode=mode, align_corners=ac, **kw)
    assert dx.dtype == dtype
    np.testing.assert_allclose(
        dx, nc.interpolate_backward(dy.astype(F64), x.shape, mode=mode, align_corners=ac, **kw),
        **_tol(dtype))


def test_float32_matches_torch():
    torch = pytest.importorskip("torch")
    x = _rng(12).standard_normal((2, 3, 5, 7)).astype(np.float32)
    for mode, ac in (("nearest", None), ("bilinear", False), ("bilinear", True)):
        for kw in (dict(scale_factor=1.5), dict(size=(9, 4))):
            got = nc.interpolate(x, mode=mode, align_corners=ac, **kw)
            want = torch.nn.functional.interpolate(torch.from_numpy(x), mode=mode,
                                                   align_corners=ac, **kw).numpy()
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_integer_and_read_only_inputs():
    x = np.arange(12, dtype=np.int64).reshape(1, 1, 3, 4)
    y = nc.interpolate(x, scale_factor=2)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.repeat(np.repeat(x, 2, 2), 2, 3))
    xr = _rng(13).standard_normal((1, 2, 3, 4))
    xr.flags.writeable = False
    nc.interpolate(xr, size=(5, 5), mode="bilinear")
    dy = np.broadcast_to(np.ones(1), (1, 2, 5, 5))  # a read-only broadcast view
    dx = nc.interpolate_backward(dy, xr.shape, size=(5, 5), mode="bilinear")
    # each output position spreads weights summing to 1: the total gradient is the count
    np.testing.assert_allclose(dx.sum(), 2 * 25, rtol=1e-12)


def test_nearest_backward_counts_copies():
    dx = nc.interpolate_backward(np.ones((1, 1, 3, 5)), (1, 1, 2, 2), size=(3, 5))
    # rows 0 -> [0, 0, 1] (3 * 2 / 3 = floor rule), columns [0, 0, 0, 1, 1]
    np.testing.assert_array_equal(dx[0, 0], [[6.0, 4.0], [3.0, 2.0]])


@pytest.mark.parametrize("mode,ac,kw", [("nearest", None, dict(size=(5, 3))),
                                        ("bilinear", False, dict(scale_factor=1.5)),
                                        ("bilinear", True, dict(size=(2, 7))),
                                        ("nearest-exact", None, dict(scale_factor=0.7))])
def test_gradcheck_function(mode, ac, kw):
    x = _rng(14).standard_normal((2, 2, 4, 5))
    assert gradcheck(lambda a: nc.interpolate(a, mode=mode, align_corners=ac, **kw), x,
                     lambda dy, a: nc.interpolate_backward(dy, a.shape, mode=mode,
                                                           align_corners=ac, **kw))


@pytest.mark.parametrize("layer", [nn.Upsample(scale_factor=2, mode="bilinear"),
                                   nn.Upsample(size=(3, 8), mode="bilinear", align_corners=True),
                                   nn.Upsample(scale_factor=(1.5, 0.5)),
                                   nn.Upsample(size=9, mode="linear"),
                                   nn.UpsamplingBilinear2d(scale_factor=2),
                                   nn.UpsamplingNearest2d(size=(2, 9))])
def test_gradcheck_layer(layer):
    shape = (2, 3, 7) if layer._config.get("mode") == "linear" else (2, 3, 4, 5)
    assert gradcheck(layer, _rng(15).standard_normal(shape))


def test_empty_batch_and_channels():
    for shape in ((0, 3, 4, 5), (2, 0, 4, 5), (0, 2, 6)):
        x = np.zeros(shape)
        mode = "linear" if len(shape) == 3 else "bilinear"
        y = nc.interpolate(x, scale_factor=2, mode=mode)
        assert y.shape == shape[:2] + tuple(2 * s for s in shape[2:])
        dx = nc.interpolate_backward(y, shape, scale_factor=2, mode=mode)
        assert dx.shape == shape


def test_nan_and_inf_match_torch():
    torch = pytest.importorskip("torch")
    x = _rng(16).standard_normal((1, 2, 4, 5))
    x[0, 0, 1, 2] = np.inf
    x[0, 1, 3, 0] = np.nan
    x[0, 1, 0, 4] = -np.inf
    for mode, ac, kw in (("nearest", None, dict(scale_factor=2)),
                         ("nearest", None, dict(size=(3, 7))),
                         ("bilinear", False, dict(size=(9, 11))),
                         ("bilinear", True, dict(size=(7, 9))),
                         ("bilinear", False, dict(size=(4, 11))),  # H kept: copied
                         ("bilinear", True, dict(size=(9, 5))),
                         ("bilinear", False, dict(scale_factor=1.1))):
        t = torch.tensor(x, requires_grad=True)
        ty = torch.nn.functional.interpolate(t, mode=mode, align_corners=ac, **kw)
        np.testing.assert_allclose(nc.interpolate(x, mode=mode, align_corners=ac, **kw),
                                   ty.detach().numpy(), rtol=1e-12, equal_nan=True)
        dy = _rng(17).standard_normal(tuple(ty.shape))
        dy[0, 0, 1, 1] = np.inf
        ty.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(
            nc.interpolate_backward(dy, x.shape, mode=mode, align_corners=ac, **kw),
            t.grad.numpy(), rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("kwargs,exc,name", [
    (dict(), ValueError, "size"),
    (dict(size=4, scale_factor=2), ValueError, "size"),
    (dict(size=4, align_corners=True), ValueError, "align_corners"),
    (dict(size=4, mode="bilinear", align_corners="yes"), TypeError, "align_corners"),
    (dict(size=4, mode="bicubic"), ValueError, "mode"),
    (dict(size=4, mode="linear"), ValueError, "mode"),
    (dict(size=4, mode=3), TypeError, "mode"),
    (dict(size=0), ValueError, "size"),
    (dict(size=(2, 3, 4)), ValueError, "size"),
    (dict(size=2.0), TypeError, "size"),
    (dict(scale_factor=0), ValueError, "scale_factor"),
    (dict(scale_factor=-1.5), ValueError, "scale_factor"),
    (dict(scale_factor=float("nan")), ValueError, "scale_factor"),
    (dict(scale_factor=0.1), ValueError, "scale_factor"),
    (dict(scale_factor="2"), TypeError, "scale_factor"),
    (dict(scale_factor=(2, 2, 2)), ValueError, "scale_factor"),
    (dict(size=4, recompute_scale_factor=True), ValueError, "recompute_scale_factor"),
])
def test_bad_arguments(kwargs, exc, name):
    x = np.zeros((1, 2, 3, 4))
    with pytest.raises(exc, match=f"interpolate: argument '{name}'"):
        nc.interpolate(x, **kwargs)
    with pytest.raises(exc, match=f"interpolate_backward: argument '{name}'"):
        nc.interpolate_backward(np.zeros((1, 2, 4, 4)), x.shape, **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="argument 'x'"):
        nc.interpolate(np.zeros((2, 3)), size=4)
    with pytest.raises(ValueError, match="argument 'x'"):
        nc.interpolate(np.zeros((1, 1, 0, 3)), size=4)
    with pytest.raises(TypeError, match="argument 'x'"):
        nc.interpolate(np.zeros((1, 1, 2, 3), np.float16), size=4)
    with pytest.raises(TypeError, match="argument 'x'"):
        nc.interpolate(np.zeros((1, 1, 2, 3), np.complex128), size=4)
    with pytest.raises(ValueError, match="argument 'dy' has shape"):
        nc.interpolate_backward(np.zeros((1, 2, 4, 5)), (1, 2, 3, 4), size=4)
    with pytest.raises(ValueError, match="argument 'dy' has shape"):
        nc.interpolate_backward(np.zeros((2, 2, 4, 4)), (1, 2, 3, 4), size=4)
    with pytest.raises(ValueError, match="argument 'input_shape'"):
        nc.interpolate_backward(np.zeros((1, 2, 4, 4)), (1, 2, 3), size=4)
    with pytest.raises(TypeError, match="argument 'input_shape'"):
        nc.interpolate_backward(np.zeros((1, 2, 4)), (1, 2, 3.0), size=4)


@pytest.mark.parametrize("kwargs,exc,name", [
    (dict(), ValueError, "size"),
    (dict(size=3, scale_factor=2), ValueError, "size"),
    (dict(size=3, align_corners=False), ValueError, "align_corners"),
    (dict(size=3, mode="trilinear"), ValueError, "mode"),
    (dict(scale_factor=-2), ValueError, "scale_factor"),
    (dict(size=(2, 0)), ValueError, "size"),
])
def test_layer_bad_arguments_fail_in_constructor(kwargs, exc, name):
    with pytest.raises(exc, match=f"Upsample: argument '{name}'"):
        nn.Upsample(**kwargs)


def test_layer_matches_torch():
    torch = pytest.importorskip("torch")
    x = _rng(18).standard_normal((2, 3, 5, 4))
    pairs = [
        (nn.Upsample(scale_factor=2), torch.nn.Upsample(scale_factor=2)),
        (nn.Upsample(size=(7, 9), mode="bilinear"),
         torch.nn.Upsample(size=(7, 9), mode="bilinear")),
        (nn.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True),
         torch.nn.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True)),
        (nn.UpsamplingBilinear2d(scale_factor=2), torch.nn.UpsamplingBilinear2d(scale_factor=2)),
        (nn.UpsamplingNearest2d(size=(3, 10)), torch.nn.UpsamplingNearest2d(size=(3, 10))),
    ]
    for ours, theirs in pairs:
        t = torch.tensor(x, requires_grad=True)
        ty = theirs(t)
        dy = _rng(19).standard_normal(tuple(ty.shape))
        ty.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(ours(x), ty.detach().numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(ours.backward(dy), t.grad.numpy(), rtol=1e-12, atol=1e-13)


def test_layer_backward_needs_forward():
    up = nn.Upsample(scale_factor=2)
    with pytest.raises(RuntimeError, match="Upsample.backward"):
        up.backward(np.zeros((1, 1, 4, 4)))
    with nc.no_grad():
        up(np.zeros((1, 1, 2, 2)))
    with pytest.raises(RuntimeError, match="Upsample.backward"):
        up.backward(np.zeros((1, 1, 4, 4)))


def test_model_file_round_trip(tmp_path):
    pytest.importorskip("h5py")
    nc.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.Upsample(scale_factor=(2, 1.5), mode="bilinear"),
        nn.UpsamplingNearest2d(size=(5, 5)), nn.UpsamplingBilinear2d(scale_factor=2),
        nn.Upsample(size=4, mode="nearest-exact"), nn.Flatten(), nn.Linear(48, 2))
    path = tmp_path / "m.h5"
    nc.save(model, path)
    again = nc.load(path)
    assert nn.to_config(again) == nn.to_config(model)
    x = _rng(20).standard_normal((2, 2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(again(x), model(x))


class _Decoder(nn.Module):
    """A PyTorch-style decoder without a backward: a layer and the functional op."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, dtype=F64)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.fc = nn.Linear(3 * 5 * 6, 2, dtype=F64)

    def forward(self, x):
        h = self.up(nc.relu(self.conv(x)))
        h = nc.interpolate(h, size=(5, 6), mode="bilinear", align_corners=True)
        h = h + nc.interpolate(h, scale_factor=1.0)
        return self.fc(h.reshape(h.shape[0], -1))


def test_recorded_forward_matches_torch():
    torch = pytest.importorskip("torch")
    tnn, tF = torch.nn, torch.nn.functional
    nc.manual_seed(1)
    model = _Decoder()

    class Twin(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = tnn.Conv2d(2, 3, 3, padding=1), tnn.Linear(90, 2)

        def forward(self, x):
            h = tF.interpolate(tF.relu(self.conv(x)), scale_factor=2, mode="bilinear")
            h = tF.interpolate(h, size=(5, 6), mode="bilinear", align_corners=True)
            h = h + tF.interpolate(h, scale_factor=1.0)
            return self.fc(h.reshape(h.shape[0], -1))

    twin = Twin().double()
    twin.load_state_dict({k: torch.from_numpy(np.array(v))
                          for k, v in model.state_dict().items()})
    x = _rng(21).standard_normal((3, 2, 4, 3))
    y = np.array([0, 1, 1])
    out = model(x)
    nn.CrossEntropyLoss()(out, y).backward()
    xt = torch.tensor(x, requires_grad=True)
    out_t = twin(xt)
    tF.cross_entropy(out_t, torch.tensor(y)).backward()
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    grads = dict(twin.named_parameters())
    for k, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, grads[k].grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=k)


def test_recorded_forward_by_finite_differences():
    nc.manual_seed(2)
    assert gradcheck(_Decoder(), _rng(22).standard_normal((2, 2, 4, 3)), rtol=1e-5)


def test_serial_and_threaded_paths_agree(monkeypatch):
    from nbconv import _config

    x = _rng(23).standard_normal((2, 3, 5, 7))
    dy = _rng(24).standard_normal((2, 3, 9, 4))
    for mode, ac in (("nearest", None), ("bilinear", False), ("bilinear", True)):
        res = []
        for threshold in (0, 1 << 62):
            monkeypatch.setattr(_config, "SERIAL_BELOW", threshold)
            res.append((nc.interpolate(x, (9, 4), mode=mode, align_corners=ac),
                        nc.interpolate_backward(dy, x.shape, (9, 4), mode=mode,
                                                align_corners=ac)))
        for a, b in zip(*res):
            np.testing.assert_array_equal(a, b)


def test_hypothesis_sweep_matches_torch():
    torch = pytest.importorskip("torch")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    modes = st.sampled_from([("nearest", None), ("nearest-exact", None), ("bilinear", False),
                             ("bilinear", True)])
    sizes = st.tuples(st.integers(1, 9), st.integers(1, 9))

    @settings(max_examples=60, deadline=None)
    @given(hw=sizes, out=sizes, mode=modes, scale=st.one_of(
        st.none(), st.floats(0.3, 3.5, allow_nan=False)), seed=st.integers(0, 99))
    def check(hw, out, mode, scale, seed):
        x = _rng(seed).standard_normal((2, 2) + hw)
        kw = dict(size=out) if scale is None else dict(scale_factor=scale)
        if scale is not None and min(math.floor(n * scale) for n in hw) < 1:
            return
        t = torch.tensor(x, requires_grad=True)
        ty = torch.nn.functional.interpolate(t, mode=mode[0], align_corners=mode[1], **kw)
        dy = _rng(seed + 1).standard_normal(tuple(ty.shape))
        ty.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(nc.interpolate(x, mode=mode[0], align_corners=mode[1], **kw),
                                   ty.detach().numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(
            nc.interpolate_backward(dy, x.shape, mode=mode[0], align_corners=mode[1], **kw),
            t.grad.numpy(), rtol=1e-12, atol=1e-13)

    check()


def test_nan_and_inf_1d_match_torch():
    torch = pytest.importorskip("torch")
    x = np.array([[[1.0, -np.inf, 2.0, np.inf, 4.0, np.nan, 5.0]]])
    for mode, ac, kw in (("linear", False, dict(size=7)), ("linear", True, dict(size=7)),
                         ("linear", False, dict(size=15)), ("linear", True, dict(size=13)),
                         ("linear", False, dict(scale_factor=0.6)),
                         ("nearest", None, dict(scale_factor=1.5))):
        want = torch.nn.functional.interpolate(torch.from_numpy(x), mode=mode,
                                               align_corners=ac, **kw).numpy()
        np.testing.assert_allclose(nc.interpolate(x, mode=mode, align_corners=ac, **kw), want,
                                   rtol=1e-12, equal_nan=True, err_msg=f"{mode} {ac} {kw}")
