"""Transposed convolutions (issue 27): ``nc.conv_transpose2d`` / ``conv_transpose1d``, their
``_backward``s, the layers ``nn.ConvTranspose2d`` / ``ConvTranspose1d``, recording, model
files and ONNX.

References: PyTorch (``torch.nn.functional.conv_transpose2d/1d`` values and autograd
gradients, float64) where torch is installed; without it, an explicit scatter loop written
here from the definition (it never calls nbconv) and float64 central differences
(``tests/gradcheck.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import directional_check

import nbconv as nc
from nbconv import nn

F64 = np.float64
NO_TORCH = "torch not installed: the PyTorch reference checks are skipped"


def _rng(seed=0):
    return np.random.default_rng(seed)


def _torch():
    return pytest.importorskip("torch", reason=NO_TORCH)


def _close(a, b, rtol=1e-11):
    b = np.asarray(b)
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


# --------------------------------------------------------------------------- loop reference

def _ref(x, w, b, stride, padding, output_padding, groups, dilation):
    """The definition as a scatter loop on (N, C_in, H, W): every input pixel adds
    ``x * w[c]`` at ``(i*s - p + kh*d, ...)``; positions outside the output are dropped."""
    N, C, H, W = x.shape
    _, Fg, kh, kw = w.shape
    (sy, sx), (ph, pw), (oh, ow), (dh, dw) = stride, padding, output_padding, dilation
    OH = (H - 1) * sy - 2 * ph + dh * (kh - 1) + oh + 1
    OW = (W - 1) * sx - 2 * pw + dw * (kw - 1) + ow + 1
    y = np.zeros((N, Fg * groups, OH, OW))
    Cg = C // groups
    for c in range(C):
        g = c // Cg
        for i in range(H):
            for j in range(W):
                for p in range(kh):
                    for q in range(kw):
                        r, t = i * sy - ph + p * dh, j * sx - pw + q * dw
                        if 0 <= r < OH and 0 <= t < OW:
                            y[:, g * Fg:(g + 1) * Fg, r, t] += x[:, c, i, j, None] * w[c, :, p, q]
    if b is not None:
        y += b[None, :, None, None]
    return y


def _pairs(s, p, o, d):
    return tuple((v, v) if np.ndim(v) == 0 else tuple(v) for v in (s, p, o, d))


#: (C_in, C_out, H, W, kernel, stride, padding, output_padding, groups, dilation)
CASES = [
    (2, 3, 4, 5, 3, 1, 0, 0, 1, 1),
    (4, 6, 3, 3, 3, 2, 1, 1, 2, 1),
    (3, 2, 2, 4, (2, 3), (2, 3), (0, 1), (1, 2), 1, 1),
    (2, 2, 5, 4, 3, 2, 2, 1, 1, 2),
    (4, 4, 3, 4, 3, 1, 1, 0, 4, 1),
    (3, 3, 4, 4, 1, 3, 1, 2, 1, 1),
    (2, 4, 3, 3, 4, 2, 1, 0, 2, (2, 1)),
    # output_padding > padding (allowed by a larger dilation): rows the convolution leaves
    (2, 3, 1, 3, 1, 1, 0, 1, 1, 2),
    (3, 3, 3, 2, 2, 2, 1, 2, 1, 3),
]


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_the_loop_reference(case):
    cin, cout, H, W, k, s, p, o, g, d = case
    k = (k, k) if np.ndim(k) == 0 else k
    rng = _rng(1)
    x = rng.standard_normal((2, cin, H, W))
    w = rng.standard_normal((cin, cout // g, *k))
    b = rng.standard_normal(cout)
    y = nc.conv_transpose2d(x, w, b, s, p, o, g, d)
    _close(y, _ref(x, w, b, *_pairs(s, p, o, d)[:3], g, _pairs(s, p, o, d)[3]))


@pytest.mark.parametrize("case", CASES)
def test_backward_by_finite_differences(case):
    cin, cout, H, W, k, s, p, o, g, d = case
    k = (k, k) if np.ndim(k) == 0 else k
    rng = _rng(2)
    x = rng.standard_normal((2, cin, H, W))
    w = rng.standard_normal((cin, cout // g, *k))
    b = rng.standard_normal(cout)
    y = nc.conv_transpose2d(x, w, b, s, p, o, g, d)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = nc.conv_transpose2d_backward(dy, x, w, s, p, o, g, d)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape
    directional_check(lambda x_, w_, b_: nc.conv_transpose2d(x_, w_, b_, s, p, o, g, d),
                      [x, w, b], dy, [dx, dw, db])


def test_it_is_the_data_gradient_of_conv2d():
    """The contract the implementation rests on, checked through the public ops."""
    rng = _rng(3)
    x = rng.standard_normal((2, 6, 4, 4))
    w = rng.standard_normal((6, 2, 3, 3))
    y = nc.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1, groups=2)
    dx, _, _ = nc.conv2d_backward(x, np.zeros(y.shape), w, stride=2, padding=1, groups=2)
    # conv2d from a 8x8 map gives 4x4 too, so its data gradient is the 8x8 output
    np.testing.assert_array_equal(y, dx)


# --------------------------------------------------------------------------- against PyTorch

ALGORITHMS = ("auto", "direct", "im2col", "tapgemm", "winograd")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_hypothesis_sweep_matches_torch(algorithm):
    torch = _torch()
    from hypothesis import assume, given, settings
    from hypothesis import strategies as st

    tF = torch.nn.functional
    small = st.integers(1, 3)
    one = st.just(1)
    # tap-GEMM runs groups 1 only; Winograd stride 1, dilation 1, groups 1 and kernels >= 2
    wino, tap = algorithm == "winograd", algorithm in ("winograd", "tapgemm")
    pair = (lambda a: st.tuples(one, one)) if wino else (lambda a: st.tuples(a, a))

    @settings(max_examples=30, deadline=None)
    @given(n=st.integers(1, 3), cin_g=small, cout_g=small, groups=one if tap else small,
           hw=st.tuples(st.integers(1, 6), st.integers(1, 6)),
           k=st.tuples(st.integers(2 if wino else 1, 4), st.integers(2 if wino else 1, 4)),
           s=pair(small), p=st.tuples(st.integers(0, 3), st.integers(0, 3)),
           d=pair(st.integers(1, 2)), o=st.tuples(st.integers(0, 2), st.integers(0, 2)),
           bias=st.booleans(), seed=st.integers(0, 999))
    def check(n, cin_g, cout_g, groups, hw, k, s, p, d, o, bias, seed):
        o = tuple(min(oo, max(ss, dd) - 1) for oo, ss, dd in zip(o, s, d))
        out = [(h - 1) * ss - 2 * pp + dd * (kk - 1) + oo + 1
               for h, ss, pp, dd, kk, oo in zip(hw, s, p, d, k, o)]
        assume(min(out) >= 1)
        rng = _rng(seed)
        x = rng.standard_normal((n, cin_g * groups, *hw))
        w = rng.standard_normal((cin_g * groups, cout_g, *k))
        b = rng.standard_normal(cout_g * groups) if bias else None
        args = (s, p, o, groups, d)
        xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        bt = torch.tensor(b, requires_grad=True) if bias else None
        yt = tF.conv_transpose2d(xt, wt, bt, *args)
        dy = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.from_numpy(dy))
        y = nc.conv_transpose2d(x, w, b, *args, algorithm=algorithm)
        dx, dw, db = nc.conv_transpose2d_backward(dy, x, w, *args, bias=bias,
                                                  algorithm=algorithm)
        _close(y, yt.detach().numpy())
        _close(dx, xt.grad.numpy())
        _close(dw, wt.grad.numpy())
        if bias:
            _close(db, bt.grad.numpy())
        else:
            assert db is None

    check()


def test_1d_hypothesis_sweep_matches_torch():
    torch = _torch()
    from hypothesis import assume, given, settings
    from hypothesis import strategies as st

    tF = torch.nn.functional

    @settings(max_examples=40, deadline=None)
    @given(n=st.integers(1, 3), cin_g=st.integers(1, 3), cout_g=st.integers(1, 3),
           groups=st.integers(1, 3), length=st.integers(1, 8), k=st.integers(1, 5),
           s=st.integers(1, 3), p=st.integers(0, 3), d=st.integers(1, 3),
           o=st.integers(0, 2), bias=st.booleans(), seed=st.integers(0, 999))
    def check(n, cin_g, cout_g, groups, length, k, s, p, d, o, bias, seed):
        o = min(o, max(s, d) - 1)
        assume((length - 1) * s - 2 * p + d * (k - 1) + o + 1 >= 1)
        rng = _rng(seed)
        x = rng.standard_normal((n, cin_g * groups, length))
        w = rng.standard_normal((cin_g * groups, cout_g, k))
        b = rng.standard_normal(cout_g * groups) if bias else None
        args = (s, p, o, groups, d)
        xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        bt = torch.tensor(b, requires_grad=True) if bias else None
        yt = tF.conv_transpose1d(xt, wt, bt, *args)
        dy = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.from_numpy(dy))
        _close(nc.conv_transpose1d(x, w, b, *args), yt.detach().numpy())
        dx, dw, db = nc.conv_transpose1d_backward(dy, x, w, *args, bias=bias)
        _close(dx, xt.grad.numpy())
        _close(dw, wt.grad.numpy())
        if bias:
            _close(db, bt.grad.numpy())

    check()


def test_larger_layers_match_torch_in_float32():
    """The layers of the benchmark (scaled down in the batch): the tap-GEMM and im2col
    plans, in float32."""
    torch = _torch()
    tF = torch.nn.functional
    for n, cin, cout, hw, k, s, p in ((4, 64, 32, 4, 4, 2, 1), (2, 32, 16, 16, 2, 2, 0),
                                      (2, 16, 8, 9, 3, 1, 1)):
        rng = _rng(hw)
        x = rng.standard_normal((n, cin, hw, hw)).astype(np.float32)
        w = (rng.standard_normal((cin, cout, k, k)) * 0.1).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        bt = torch.tensor(b, requires_grad=True)
        yt = tF.conv_transpose2d(xt, wt, bt, s, p)
        dy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
        yt.backward(torch.from_numpy(dy))
        y = nc.conv_transpose2d(x, w, b, s, p)
        dx, dw, db = nc.conv_transpose2d_backward(dy, x, w, s, p)
        for got, want in ((y, yt), (dx, xt.grad), (dw, wt.grad), (db, bt.grad)):
            assert got.dtype == np.float32
            _close(got, want.detach().numpy(), rtol=2e-5)


def test_nan_and_inf_reach_the_outputs_they_reach_in_torch():
    torch = _torch()
    rng = _rng(4)
    x = rng.standard_normal((2, 16, 5, 5))
    x[0, 3, 2, 1], x[1, 0, 4, 4], x[1, 5, 0, 0] = np.nan, np.inf, -np.inf
    w = rng.standard_normal((16, 8, 3, 3))
    for algorithm in ("auto", "direct", "im2col", "tapgemm", "winograd"):
        for s, p in ((1, 1), (2, 0)):
            if algorithm == "winograd" and s > 1:
                continue
            want = torch.nn.functional.conv_transpose2d(torch.from_numpy(x),
                                                        torch.from_numpy(w), None, s, p)
            got = nc.conv_transpose2d(x, w, None, s, p, algorithm=algorithm)
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-11, atol=1e-11,
                                       equal_nan=True, err_msg=f"{algorithm} s{s}")


# --------------------------------------------------------------------------- shapes and inputs

def test_empty_batch():
    w = _rng(5).standard_normal((3, 4, 3, 3))
    x = np.zeros((0, 3, 5, 5))
    y = nc.conv_transpose2d(x, w, np.ones(4), stride=2, padding=1, output_padding=1)
    assert y.shape == (0, 4, 10, 10)
    dx, dw, db = nc.conv_transpose2d_backward(np.zeros(y.shape), x, w, stride=2, padding=1,
                                              output_padding=1)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dw, np.zeros(w.shape))
    np.testing.assert_array_equal(db, np.zeros(4))
    assert nc.conv_transpose1d(np.zeros((0, 3, 5)), w[:, :, 0]).shape == (0, 4, 7)


def test_unbatched_input_as_torch():
    rng = _rng(6)
    x = rng.standard_normal((3, 4, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    y = nc.conv_transpose2d(x, w, stride=2)
    np.testing.assert_array_equal(y, nc.conv_transpose2d(x[None], w, stride=2)[0])
    dy = rng.standard_normal(y.shape)
    dx, dw, _ = nc.conv_transpose2d_backward(dy, x, w, stride=2)
    dx1, dw1, _ = nc.conv_transpose2d_backward(dy[None], x[None], w, stride=2)
    np.testing.assert_array_equal(dx, dx1[0])
    np.testing.assert_array_equal(dw, dw1)
    y1 = nc.conv_transpose1d(x[:, 0], w[:, :, 0], stride=2)
    assert y1.shape == (2, 11)
    dx, _, _ = nc.conv_transpose1d_backward(np.ones(y1.shape), x[:, 0], w[:, :, 0], stride=2)
    assert dx.shape == (3, 5)


def test_read_only_strided_and_float32_inputs():
    rng = _rng(7)
    x = rng.standard_normal((2, 3, 5, 4))
    w = rng.standard_normal((3, 2, 3, 3))
    dy = rng.standard_normal((2, 2, 11, 9))
    want = (nc.conv_transpose2d(x, w, stride=2),
            *nc.conv_transpose2d_backward(dy, x, w, stride=2)[:2])
    xs = np.asfortranarray(x)
    ws = w.copy()
    ws.flags.writeable = False
    dys = np.ascontiguousarray(dy[:, :, ::-1])[:, :, ::-1]  # negative strides
    xb = np.broadcast_to(x[:1], (2, 3, 5, 4))  # a read-only broadcast view
    got = (nc.conv_transpose2d(xs, ws, stride=2),
           *nc.conv_transpose2d_backward(dys, xs, ws, stride=2)[:2])
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(nc.conv_transpose2d(xb, ws, stride=2)[1],
                                  nc.conv_transpose2d(x[:1], w, stride=2)[0])
    y32 = nc.conv_transpose2d(x.astype(np.float32), w, stride=2)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, want[0], rtol=1e-5, atol=1e-5)
    assert nc.conv_transpose2d(np.ones((1, 3, 2, 2), np.int64), w).dtype == np.float32


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(output_padding=2, stride=2), ValueError, "output_padding.*smaller than either"),
    (dict(output_padding=(0, 1)), ValueError, "output_padding"),
    (dict(output_padding=-1), ValueError, "output_padding"),
    (dict(padding=-1), ValueError, "padding"),
    (dict(stride=0), ValueError, "stride"),
    (dict(dilation=0), ValueError, "dilation"),
    (dict(stride=1.5), TypeError, "stride"),
    (dict(groups=2), ValueError, "groups.*3 input channels"),
    (dict(padding=4), ValueError, "output size along H would be"),
    (dict(bias=np.ones(3)), ValueError, r"bias.*\(2,\)"),
    (dict(algorithm="fast"), ValueError, "algorithm"),
    (dict(algorithm="winograd", stride=2), ValueError, "winograd"),
])
def test_bad_arguments_name_the_argument(kwargs, exc, match):
    x = np.ones((1, 3, 4, 4))
    w = np.ones((3, 2, 3, 3))
    with pytest.raises(exc, match=match):
        nc.conv_transpose2d(x, w, **kwargs)


def test_bad_shapes_name_the_argument_and_the_shapes():
    x = np.ones((1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"weight.*4 input channels.*\(4, 2, 3, 3\)"):
        nc.conv_transpose2d(x, np.ones((4, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"'weight' must be 4-D"):
        nc.conv_transpose2d(x, np.ones((3, 2, 3)))
    with pytest.raises(ValueError, match=r"'x' must be 4-D"):
        nc.conv_transpose2d(np.ones((4, 4)), np.ones((3, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"'dy' has shape \(1, 2, 5, 5\).*\(1, 2, 6, 6\)"):
        nc.conv_transpose2d_backward(np.ones((1, 2, 5, 5)), x, np.ones((3, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"dy.*like the unbatched argument 'x'"):
        nc.conv_transpose2d_backward(np.ones((1, 2, 6, 6)), x[0], np.ones((3, 2, 3, 3)))
    with pytest.raises(TypeError, match="need_dx"):
        nc.conv_transpose2d_backward(np.ones((1, 2, 6, 6)), x, np.ones((3, 2, 3, 3)),
                                     need_dx="no")
    with pytest.raises(TypeError, match="float16"):
        nc.conv_transpose2d(x.astype(np.float16), np.ones((3, 2, 3, 3)))
    with pytest.raises(ValueError, match="'output_padding' 3 along L"):
        nc.conv_transpose1d(np.ones((1, 3, 4)), np.ones((3, 2, 3)), stride=2, output_padding=3)
    with pytest.raises(ValueError, match="'stride' must be an int or a 1-tuple"):
        nc.conv_transpose1d(np.ones((1, 3, 4)), np.ones((3, 2, 3)), stride=(2, 2))


def test_need_dx_false_skips_the_input_gradient():
    rng = _rng(8)
    x, w = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((3, 2, 3, 3))
    dy = rng.standard_normal((2, 2, 6, 6))
    dx, dw, db = nc.conv_transpose2d_backward(dy, x, w, need_dx=False, bias=False)
    assert dx is None and db is None
    np.testing.assert_array_equal(dw, nc.conv_transpose2d_backward(dy, x, w)[1])


# --------------------------------------------------------------------------- layers

def test_layer_init_is_pytorchs():
    """U(+-1/sqrt(fan_in)) with fan_in = C_out/groups * k*k (the weight's second axis), as
    torch's ConvTranspose2d computes it -- not the C_in-based fan-in of a convolution."""
    nc.manual_seed(0)
    layer = nn.ConvTranspose2d(64, 8, 4, groups=2)
    bound = 1 / np.sqrt(8 // 2 * 16)
    assert layer.weight.shape == (64, 4, 4, 4) and layer.weight.data.dtype == np.float32
    for p in (layer.weight.data, layer.bias.data):
        assert np.abs(p).max() <= bound
        assert np.abs(p).max() > 0.8 * bound  # not the smaller bound of fan_in = 64/2*16
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    t = torch.nn.ConvTranspose2d(64, 8, 4, groups=2)
    assert abs(float(t.weight.detach().abs().max()) - bound) < 0.05 * bound


def test_layer_matches_torch_layer_with_output_size():
    torch = _torch()
    nc.manual_seed(1)
    ours = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2, dilation=(1, 2),
                              dtype=F64)
    theirs = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2,
                                      dilation=(1, 2)).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = _rng(9).standard_normal((2, 4, 5, 3))
    for size in (None, (10, 8), [2, 6, 9, 7]):
        xt = torch.tensor(x, requires_grad=True)
        theirs.zero_grad()
        ours.zero_grad()
        yt = theirs(xt, output_size=size)
        y = ours(x, output_size=size)
        _close(y, yt.detach().numpy())
        dy = _rng(10).standard_normal(y.shape)
        yt.backward(torch.from_numpy(dy))
        _close(ours.backward(dy), xt.grad.numpy())
        _close(ours.weight.grad, theirs.weight.grad.numpy())
        _close(ours.bias.grad, theirs.bias.grad.numpy())
    with pytest.raises(ValueError, match="output_size"):
        ours(x, output_size=(12, 9))


def test_layer_arguments_are_checked_when_built():
    with pytest.raises(ValueError, match="output_padding"):
        nn.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="padding_mode"):
        nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="groups"):
        nn.ConvTranspose2d(4, 3, 3, groups=2)
    with pytest.raises(TypeError, match="bias"):
        nn.ConvTranspose1d(2, 2, 3, bias="yes")
    with pytest.raises(RuntimeError, match="ConvTranspose2d.backward"):
        nn.ConvTranspose2d(2, 2, 3).backward(np.zeros((1, 2, 5, 5), np.float32))


def test_layer_repr_config_and_model_file(tmp_path):
    pytest.importorskip("h5py", reason="h5py not installed: model files are skipped")
    nc.manual_seed(2)
    model = nn.Sequential(nn.ConvTranspose2d(3, 4, (3, 2), stride=(2, 1), padding=1,
                                             output_padding=(1, 0)),
                          nn.ReLU(), nn.Flatten(2, 3),
                          nn.ConvTranspose1d(4, 2, 3, stride=2, bias=False))
    assert "ConvTranspose2d(in_channels=3, out_channels=4, kernel_size=[3, 2]" in repr(model)
    assert set(model.state_dict()) == {"0.weight", "0.bias", "3.weight"}
    x = _rng(11).standard_normal((2, 3, 4, 5)).astype(np.float32)
    path = tmp_path / "m.h5"
    nc.save(model, path)
    again = nc.load(path)
    assert nn.to_config(again) == nn.to_config(model)
    np.testing.assert_array_equal(again(x), model(x))


def test_layer_in_a_model_trained_with_fit():
    """An up-sampling classifier: ConvTranspose2d inside a Sequential, trained by fit()."""
    from nbconv.data import DataLoader
    from nbconv.train import fit

    nc.manual_seed(3)
    rng = _rng(12)
    X = rng.standard_normal((64, 2, 4, 4)).astype(np.float32)
    y = (X[:, 0].mean(axis=(1, 2)) > X[:, 1].mean(axis=(1, 2))).astype(np.int64)
    model = nn.Sequential(nn.ConvTranspose2d(2, 4, 2, stride=2), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(64, 2))
    opt = nc.optim.Adam(model.parameters(), lr=1e-2)
    history = fit(model, nn.CrossEntropyLoss(), opt, DataLoader(X, y, batch_size=16, seed=0),
                  epochs=8, progress=False)
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    assert history["accuracy"][-1] > 0.8


class _Up(nn.Module):
    """A PyTorch-style decoder without a backward: the layers and the functional ops."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 4, 4, stride=2, padding=1, dtype=F64)
        self.up1 = nn.ConvTranspose1d(4, 2, 3, stride=2, output_padding=1, dtype=F64)
        self.w = nn.Parameter(_rng(13).standard_normal((4, 2, 2, 2)))

    def forward(self, x):
        h = nc.relu(self.up(x))
        h = h + nc.conv_transpose2d(h[:, :, ::2, ::2], self.w, stride=2, groups=2)
        return self.up1(h.reshape(h.shape[0], 4, -1))


def test_pytorch_style_module_trains_with_loss_backward():
    torch = _torch()
    tnn, tF = torch.nn, torch.nn.functional
    nc.manual_seed(4)
    model = _Up()

    class Twin(tnn.Module):
        def __init__(self):
            super().__init__()
            self.up = tnn.ConvTranspose2d(3, 4, 4, stride=2, padding=1)
            self.up1 = tnn.ConvTranspose1d(4, 2, 3, stride=2, output_padding=1)
            self.w = tnn.Parameter(torch.zeros(4, 2, 2, 2))

        def forward(self, x):
            h = tF.relu(self.up(x))
            h = h + tF.conv_transpose2d(h[:, :, ::2, ::2], self.w, stride=2, groups=2)
            return self.up1(h.reshape(h.shape[0], 4, -1))

    twin = Twin().double()
    twin.load_state_dict({k: torch.from_numpy(np.array(v))
                          for k, v in model.state_dict().items()})
    x = _rng(14).standard_normal((2, 3, 3, 3))
    target = _rng(15).standard_normal((2, 2, 74))
    loss = nn.MSELoss()(model(x), target)
    loss.backward()
    xt = torch.tensor(x)
    tloss = tF.mse_loss(twin(xt), torch.from_numpy(target))
    tloss.backward()
    _close(float(loss), float(tloss.detach()))
    grads = dict(twin.named_parameters())
    for k, p in model.named_parameters():
        _close(p.grad, grads[k].grad.numpy())
    opt = nc.optim.SGD(model.parameters(), lr=0.1)
    before = float(loss)
    for _ in range(5):
        opt.zero_grad()
        loss = nn.MSELoss()(model(x), target)
        loss.backward()
        opt.step()
    assert float(nn.MSELoss()(model(x), target)) < before


def test_pytorch_style_module_by_finite_differences():
    from nbconv.testing import gradcheck

    nc.manual_seed(5)
    assert gradcheck(_Up(), _rng(16).standard_normal((2, 3, 3, 3)), rtol=1e-5)


# --------------------------------------------------------------------------- ONNX

def test_onnx_round_trip_through_onnxruntime(tmp_path):
    pytest.importorskip("onnx", reason="onnx not installed: pip install 'nbconv[onnx]'")
    ort = pytest.importorskip("onnxruntime",
                              reason="onnxruntime not installed: pip install 'nbconv[onnx]'")
    nc.manual_seed(6)
    model = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2,
                           dilation=(1, 2)),
        nn.ConvTranspose2d(4, 3, 2, stride=(2, 3), bias=False)).eval()
    x = _rng(17).standard_normal((2, 2, 5, 4)).astype(np.float32)
    path = nc.onnx.export(model, tmp_path / "m.onnx", x.shape)
    import onnx

    assert [n.op_type for n in onnx.load(str(path)).graph.node].count("ConvTranspose") == 2
    with nc.no_grad():
        want = model(x)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    back = nc.onnx.load(path)
    np.testing.assert_allclose(back(x), want, rtol=1e-6, atol=1e-6)
    # the loaded graph trains: its backward pass equals the model's
    back.train()
    model.train()
    dy = _rng(18).standard_normal(want.shape).astype(np.float32)
    back(x)
    model(x)
    np.testing.assert_allclose(back.backward(dy), model.backward(dy), rtol=1e-5, atol=1e-5)


def test_onnx_export_1d_round_trip(tmp_path):
    pytest.importorskip("onnx", reason="onnx not installed: pip install 'nbconv[onnx]'")
    ort = pytest.importorskip("onnxruntime",
                              reason="onnxruntime not installed: pip install 'nbconv[onnx]'")
    nc.manual_seed(7)
    model = nn.Sequential(nn.ConvTranspose1d(3, 4, 4, stride=3, padding=1, output_padding=2),
                          nn.ReLU(), nn.ConvTranspose1d(4, 2, 3, dilation=2, groups=2))
    model.eval()
    x = _rng(19).standard_normal((2, 3, 6)).astype(np.float32)
    path = nc.onnx.export(model, tmp_path / "m.onnx", x.shape)
    with nc.no_grad():
        want = model(x)
    assert want.shape == (2, 2, 23)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {sess.get_inputs()[0].name: x})[0], want,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(nc.onnx.load(path)(x), want, rtol=1e-6, atol=1e-6)


def _convtranspose_file(tmp_path, x_shape, w, **attrs):
    import onnx
    from onnx import TensorProto, helper

    nd = w.ndim - 2
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)], "ct",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * (nd + 2))],
        [onnx.numpy_helper.from_array(w, "w")])
    path = tmp_path / "ct.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("attrs", [
    dict(strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(strides=[2, 2], auto_pad="SAME_LOWER"),
    dict(strides=[3, 2], pads=[2, 0, 1, 1], output_padding=[0, 1]),
    dict(strides=[2, 3], output_shape=[9, 14]),
    dict(strides=[2, 2], pads=[0, 1, 1, 2]),
])
def test_onnx_import_agrees_with_onnxruntime(tmp_path, attrs):
    pytest.importorskip("onnx", reason="onnx not installed: pip install 'nbconv[onnx]'")
    ort = pytest.importorskip("onnxruntime",
                              reason="onnxruntime not installed: pip install 'nbconv[onnx]'")
    w = _rng(20).standard_normal((2, 3, 3, 3)).astype(np.float32)
    x = _rng(21).standard_normal((1, 2, 4, 5)).astype(np.float32)
    path = _convtranspose_file(tmp_path, list(x.shape), w, **attrs)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0]
    got = nc.onnx.load(path)(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_onnx_import_refuses_what_it_cannot_run(tmp_path):
    pytest.importorskip("onnx", reason="onnx not installed: pip install 'nbconv[onnx]'")
    w = np.ones((2, 3, 3, 3), np.float32)
    path = _convtranspose_file(tmp_path, [1, 2, 4, 4], w, strides=[2, 2], pads=[3, 0, 0, 0])
    with pytest.raises(nc.onnx.UnsupportedOpError, match="ConvTranspose.*pads"):
        nc.onnx.load(path)
    path = _convtranspose_file(tmp_path, [1, 2, 4, 4, 4], np.ones((2, 3, 3, 3, 3), np.float32))
    with pytest.raises(nc.onnx.UnsupportedOpError, match="3-D"):
        nc.onnx.load(path)


# --------------------------------------------------------------------------- patch layers

@pytest.mark.parametrize("shape, k, groups", [
    ((2, 4, 9, 7), (2, 2), 1),    # rows and columns past the last window
    ((3, 6, 8, 9), (2, 3), 2),
    ((2, 3, 12, 12), (4, 4), 1),  # a ViT-like patch embedding
    ((1, 4, 5, 5), (1, 1), 2),
])
def test_patch_layers_match_torch(shape, k, groups):
    """Kernel = stride, no padding: im2col's columns are a rearrangement
    (``nbconv.kernels.conv.patches``), for conv2d's passes and the transposed convolution."""
    torch = _torch()
    tF = torch.nn.functional
    rng = _rng(30)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((6, shape[1] // groups, *k))
    b = rng.standard_normal(6)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = tF.conv2d(xt, wt, torch.from_numpy(b), k, 0, 1, groups)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(dy))
    y = nc.conv2d(x, w, b, k, groups=groups, algorithm="im2col")
    dx, dw, _ = nc.conv2d_backward(dy, x, w, k, groups=groups, algorithm="im2col")
    _close(y, yt.detach().numpy())
    _close(dx, xt.grad.numpy())
    _close(dw, wt.grad.numpy())
    # the transposed convolution of y back to x's size (output_padding fills the rest)
    wt2 = rng.standard_normal((6, shape[1] // groups, *k))
    op = tuple(n - o * kk for n, o, kk in zip(shape[2:], y.shape[2:], k))
    if all(o < kk for o, kk in zip(op, k)):
        want = tF.conv_transpose2d(torch.from_numpy(y), torch.from_numpy(wt2), None, k, 0, op,
                                   groups)
        _close(nc.conv_transpose2d(y, wt2, None, k, 0, op, groups, algorithm="im2col"),
               want.numpy())


def test_benchmark_script_runs(tmp_path):
    """benchmarks/bench_conv_transpose.py --quick, on this checkout's nbconv."""
    _torch()
    import json
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    out = tmp_path / "convt.json"
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_conv_transpose.py"),
                           "--quick", "--threads", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=root, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "machine :" in proc.stdout and "ratio" in proc.stdout
    data = json.loads(out.read_text())
    assert data["benchmark"] == "conv_transpose" and data["quick"] is True
    assert data["machine"]["nbconv_threads"] == 1
    assert len(data["results"]) == 2
    for r in data["results"].values():
        assert r["matches_torch"] is True
        assert r["step"]["nbconv_ms"] > 0 and r["step"]["torch_ms"] > 0
