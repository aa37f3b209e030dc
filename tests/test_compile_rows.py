"""A planned network's maps held as rows of channels ``(H, W, N, C)`` between layers
(``nbconv.inference.layouts``): which values the planner keeps so, and that the result is the
plain forward's -- non-finite values included -- against the layer-by-layer NCHW forward and
an explicit-loop pooling reference."""

from __future__ import annotations

import numpy as np
import pytest
from reference_pool import ref_max_pool2d
from test_compile import _close, _plain

import nbconv as nc
from nbconv import nn
from nbconv.kernels import pool2d as K

RNG = np.random.default_rng(21)


def _inception_like(c=6):
    """1x1 and 3x3 branches, a 3x3/1 max pool branch, a channel concat, a 3x3/2 max pool,
    a residual sum with its ReLU, a global average and a classifier."""
    g = nn.Graph()
    g.add("stem", nn.Conv2d(3, c, 3, padding=1), "input")
    g.add("b1", nn.Conv2d(c, c, 1), "stem")
    g.add("b1r", nn.ReLU(), "b1")
    g.add("b2a", nn.Conv2d(c, c, 1), "stem")
    g.add("b2r", nn.ReLU(), "b2a")
    g.add("b2b", nn.Conv2d(c, c, 3, padding=1), "b2r")
    g.add("b3a", nn.MaxPool2d(3, 1, padding=1), "stem")
    g.add("b3b", nn.Conv2d(c, c, 1), "b3a")
    g.add("cat", nn.Concat(), "b1r", "b2b", "b3b")
    g.add("pool", nn.MaxPool2d(3, 2, padding=1, ceil_mode=True), "cat")
    g.add("c2", nn.Conv2d(3 * c, 3 * c, 3, padding=1), "pool")
    g.add("res", nn.Add(), "pool", "c2")
    g.add("rr", nn.ReLU(), "res")
    g.add("gap", nn.AdaptiveAvgPool2d((1, 1)), "rr")
    g.add("flat", nn.Flatten(), "gap")
    g.add("fc", nn.Linear(3 * c, 5), "flat")
    return g


def _row_names(cm, n):
    plan = cm._plan(n)
    return {row[0] for row in plan.rows if row[4].endswith("rows")}


def test_planner_keeps_chains_in_rows_and_the_ends_in_nchw():
    nc.manual_seed(3)
    model = _inception_like()
    cm = nc.compile(model, (2, 3, 9, 9), algorithm="tapgemm")
    rows = _row_names(cm, 2)
    # the branches, their concatenation, the pools and the residual sum stay in rows ...
    assert {"b1", "b2a", "b2b", "b3a", "b3b", "cat", "pool", "c2", "res"} <= rows
    # ... the stem (read by a max pool and two convolutions: all take rows) too; the global
    # average writes NCHW for the flatten, and the classifier's values are not maps
    assert "stem" in rows and not {"gap", "fc"} & rows
    assert "rows" in cm.explain()


def test_rows_network_equals_the_plain_forward():
    nc.manual_seed(4)
    model = _inception_like()
    cm = nc.compile(model, (3, 3, 9, 9), algorithm="tapgemm")
    for n in (3, 1, 4):
        x = RNG.standard_normal((n, 3, 9, 9), dtype=np.float32)
        _close(cm(x), _plain(model, x))


def test_rows_network_non_finite_values_as_plain_forward():
    """inf and NaN entering rows of channels reach exactly the outputs the plain forward
    gives them (the prepared layers recompute such results in NCHW)."""
    nc.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(2, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                          nn.MaxPool2d(3, 1, padding=1), nn.Conv2d(4, 3, 1))
    cm = nc.compile(model, (2, 2, 6, 6), algorithm="tapgemm")
    assert {"0", "2", "3"} <= _row_names(cm, 2)
    x = RNG.standard_normal((2, 2, 6, 6), dtype=np.float32)
    x[0, 1, 2, 3] = np.nan
    x[1, 0, 5, 0] = np.inf
    x[1, 1, 0, 5] = -np.inf
    y, want = cm(x), _plain(model, x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(want))
    assert np.isfinite(want).any() and not np.isfinite(want).all()
    fin = np.isfinite(want)
    _close(y[fin], want[fin])


def test_readers_that_need_nchw_keep_their_values_nchw():
    """The network's result and a module run as it is read NCHW, so the values they read are
    not rows; a strided tap-GEMM convolution reads rows (split into its stride phases, odd
    sizes included) and writes them."""
    nc.manual_seed(6)

    class Doubler(nn.Module):  # a user module: runs as it is, on NCHW
        def forward(self, x):
            return 2 * x

    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, stride=2, padding=1),
                          nn.Conv2d(4, 4, (2, 3), stride=(3, 2)), Doubler(),
                          nn.Conv2d(4, 4, 1))
    cm = nc.compile(model, (2, 3, 11, 9), algorithm="tapgemm")
    assert _row_names(cm, 2) == {"0", "1"}
    for n in (2, 3):
        x = RNG.standard_normal((n, 3, 11, 9), dtype=np.float32)
        _close(cm(x), _plain(model, x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, k, s, p, ceil_mode", [
    ((2, 3, 4, 4), 3, 1, 1, False),
    ((2, 5, 8, 8), 3, 2, 1, False),
    ((1, 300, 7, 5), 3, 2, 1, True),    # more lanes than one block, partial windows
    ((3, 2, 6, 9), (2, 3), (2, 1), (1, 1), True),
    ((1, 1, 1, 1), 3, 1, 1, False),
])
def test_max_pool_rows_kernel_matches_reference(dtype, shape, k, s, p, ceil_mode):
    def pair(v):
        return (v, v) if isinstance(v, int) else v

    k, s, p = pair(k), pair(s), pair(p)
    x = RNG.standard_normal(shape).astype(dtype)
    x.flat[::7] = np.nan
    x.flat[3::11] = -np.inf
    want = ref_max_pool2d(x, k, s, p, (1, 1), ceil_mode)[0]
    N, C, H, W = shape
    OH, OW = want.shape[2:]
    xr = np.ascontiguousarray(x.transpose(2, 3, 0, 1)).reshape(H, W, N * C)
    y = np.full((OH, OW, N * C), 7.0, dtype)
    K._max_pool2d_rows_fwd(xr, y, *k, *s, *p)
    np.testing.assert_array_equal(y.reshape(OH, OW, N, C).transpose(2, 3, 0, 1), want)
    # NCHW planes in, rows out (a map entering rows at its pooling layer)
    for blocks in (1, 3):
        y = np.full((OH, OW, N * C), 7.0, dtype)
        K._max_pool2d_planes_to_rows(x.reshape(N * C, H, W), y, blocks, *k, *s, *p)
        np.testing.assert_array_equal(y.reshape(OH, OW, N, C).transpose(2, 3, 0, 1), want)


def test_nchw_map_enters_rows_at_a_max_pool():
    nc.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.Sigmoid(),
                          nn.MaxPool2d(3, 2, padding=1), nn.Conv2d(5, 4, 1), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=1))
    cm = nc.compile(model, (3, 3, 10, 10), algorithm="tapgemm")
    assert {"2", "3"} <= _row_names(cm, 3) and "1" not in _row_names(cm, 3)
    x = RNG.standard_normal((3, 3, 10, 10), dtype=np.float32)
    _close(cm(x), _plain(model, x))


def test_recomputation_of_non_finite_results_from_rows(monkeypatch):
    """The recomputation a non-finite result triggers (NCHW forward of the layer, the input
    rearranged from rows and the result back into rows) gives the same network output: forced
    here on every layer by reporting every result as non-finite."""
    from nbconv.conv import engine

    nc.manual_seed(7)
    model = _inception_like()
    cm = nc.compile(model, (2, 3, 9, 9), algorithm="tapgemm")
    x = RNG.standard_normal((2, 3, 9, 9), dtype=np.float32)
    want = _plain(model, x)
    calls = []

    def never_finite(*arrays):
        calls.append(len(arrays))
        return False

    monkeypatch.setattr(engine, "finite", never_finite)
    _close(cm(x), want)
    assert len(calls) >= 6  # every convolution of the rows chain recomputed


@pytest.mark.parametrize("x_shape, w_shape, stride, padding", [
    ((3, 3, 32, 32), (8, 3, 11, 11), 4, 0),    # NiN's first layer, in small
    ((2, 3, 32, 32), (5, 3, 11, 11), 4, 1),    # AlexNet's: padding on every side
    ((2, 1, 19, 23), (4, 1, 7, 5), (5, 4), (3, 2)),  # windows past the right and bottom edge
    ((1, 2, 9, 9), (3, 2, 3, 3), 4, 4),         # padding wider than some windows reach
])
def test_pixel_rows_first_layer_matches_reference(x_shape, w_shape, stride, padding):
    """The pixel-major im2col of a planned first layer (rows of channels out) against the
    float64 scipy reference, with bias and ReLU."""
    from reference_conv import ref_conv2d

    from nbconv._checks.conv import Geom
    from nbconv.conv import im2col

    rng = np.random.default_rng(10)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    g = Geom.of(x_shape, w_shape, stride=stride, padding=padding)
    assert im2col.pixel_rows_takes(x_shape, w_shape, g, np.float64)
    y = np.full((g.OH, g.OW, x_shape[0], w_shape[0]), np.nan)
    im2col.prepare_pixel_rows(x_shape, w, g)(x, b, y, True, None)
    want = np.maximum(ref_conv2d(x, w, b, stride=stride, padding=padding), 0)
    np.testing.assert_allclose(y.transpose(2, 3, 0, 1), want, rtol=1e-10, atol=1e-10)


def test_planned_first_layer_of_large_stride_writes_rows():
    nc.manual_seed(9)
    # the 3x3 reader on a 5x5 map is tap-GEMM's (small-maps), so it reads rows
    model = nn.Sequential(nn.Conv2d(3, 16, 11, stride=4), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(3, 2, padding=1), nn.Flatten(), nn.Linear(16 * 3 * 3, 5))
    cm = nc.compile(model, (4, 3, 27, 27))
    assert "im2col (pixel rows)" in cm.explain() and "0" in _row_names(cm, 4)
    x = RNG.standard_normal((4, 3, 27, 27), dtype=np.float32)
    _close(cm(x), _plain(model, x))
    x[1, 2, 13, 13] = np.nan
    x[3, 0, 0, 0] = np.inf
    y, want = cm(x), _plain(model, x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(want))


def test_register_block_layer_writes_rows():
    """A direct layer of the register-block family (strided, short rows: that family on
    either ISA) stores its result as rows of channels for the pool and tap-GEMM layer after it,
    bias, ReLU and non-finite inputs included."""
    from nbconv._checks.conv import Geom
    from nbconv.conv.convplan import forward_plan

    nc.manual_seed(11)
    model = nn.Sequential(nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.ReLU(),
                          nn.MaxPool2d(3, 2, padding=1), nn.Conv2d(32, 32, 3, padding=1),
                          nn.Flatten(), nn.Linear(32 * 5 * 5, 4))
    g = Geom.of((4, 3, 20, 20), (32, 3, 5, 5), stride=2, padding=2)
    assert forward_plan("conv2d", (4, 3, 20, 20), (32, 3, 5, 5), g, np.float32,
                        "auto").kernels[0] == "regblock"
    cm = nc.compile(model, (4, 3, 20, 20))
    assert {"0", "2"} <= _row_names(cm, 4)
    x = RNG.standard_normal((4, 3, 20, 20), dtype=np.float32)
    _close(cm(x), _plain(model, x))
    x[2, 1, 7, 7] = np.nan
    y, want = cm(x), _plain(model, x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
