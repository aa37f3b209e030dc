"""im2col's forward pass on the im2row layout (nbconv.kernels.conv2d_im2row) against the
SciPy-based reference, whichever matrix product this machine runs, and the rule that picks it."""

from __future__ import annotations

import numpy as np
import pytest
from reference_conv import ref_conv2d

import nbconv as nc
from nbconv import _config
from nbconv.conv import im2col, plan


@pytest.fixture
def rows_layout(monkeypatch):
    """Every im2col forward pass the layout admits takes it (as where the vector product is
    on offer), and the spy list records each chunk of rows built."""
    monkeypatch.setattr(im2col, "vector_gemm_offered", lambda dtype: True)
    built = []
    real = im2col._conv2d_im2row

    def spy(x, rows, n0, nb, *rest):
        built.append((n0, nb, rows.shape))
        return real(x, rows, n0, nb, *rest)

    monkeypatch.setattr(im2col, "_conv2d_im2row", spy)
    return built


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, bias", [
    ((4, 3, 32, 32), (96, 3, 11, 11), 4, 0, 1, True),    # NiN's first layer
    ((3, 3, 32, 32), (64, 3, 11, 11), 4, 2, 1, True),    # AlexNet's, padded
    ((2, 3, 19, 17), (16, 3, 7, 7), (3, 2), (1, 3), 1, False),  # odd sizes, no bias
    ((2, 8, 20, 20), (32, 8, 5, 5), 3, 2, 2, True),      # dilated
    ((5, 15, 6, 6), (48, 15, 3, 3), 1, 1, 1, True),      # stride 1, padding on all sides
])
def test_rows_match_the_reference(rows_layout, dtype, x_shape, w_shape, stride, padding,
                                  dilation, bias):
    rng = np.random.default_rng(sum(x_shape) + sum(w_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    got = nc.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation,
                    algorithm="im2col")
    assert rows_layout, "the rows layout did not run"
    want = ref_conv2d(x.astype(np.float64), w.astype(np.float64),
                      None if b is None else b.astype(np.float64), stride=stride,
                      padding=padding, dilation=dilation)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_rows_in_chunks_of_images(rows_layout, monkeypatch):
    """A bound on the buffers smaller than the batch's rows: chunks of whole images (one at
    least), the same result."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 3, 32, 32)).astype(np.float32)
    w = rng.standard_normal((32, 3, 11, 11)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    whole = nc.conv2d(x, w, b, stride=4, algorithm="im2col")
    rows_per_image = 36 * 363 * 4
    monkeypatch.setattr(_config, "IM2COL_MAX_BYTES", 3 * rows_per_image)
    del rows_layout[:]
    chunked = nc.conv2d(x, w, b, stride=4, algorithm="im2col")
    assert [(n0, nb) for n0, nb, _ in rows_layout] == [(0, 3), (3, 3), (6, 1)]
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(_config, "IM2COL_MAX_BYTES", 1)  # below one image: one at a time
    del rows_layout[:]
    np.testing.assert_allclose(nc.conv2d(x, w, b, stride=4, algorithm="im2col"), whole,
                               rtol=1e-5, atol=1e-5)
    assert [nb for _, nb, _ in rows_layout] == [1] * 7


def test_rows_keep_nan_and_inf_where_the_reference_has_them(rows_layout):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 24, 24)).astype(np.float32)
    x[0, 1, 5, 7] = np.nan
    x[1, 2, 20, 3] = np.inf
    w = rng.standard_normal((16, 3, 11, 11)).astype(np.float32)
    got = nc.conv2d(x, w, stride=4, algorithm="im2col")
    want = ref_conv2d(x.astype(np.float64), w.astype(np.float64), stride=4)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-3)


def test_the_rule():
    """Rows for long reductions, filters in multiples of 16 and small outputs, and only where
    the vector product is on offer."""
    assert plan.im2row_forward(3, 96, 11, 11, 36, True)
    assert not plan.im2row_forward(3, 96, 11, 11, 36, False)
    assert not plan.im2row_forward(3, 96, 5, 5, 36, True)      # 75 terms
    assert not plan.im2row_forward(3, 100, 11, 11, 36, True)   # 100 filters
    assert not plan.im2row_forward(3, 64, 7, 7, 256, True)     # 16x16 outputs
    assert not plan.im2row_forward(16, 64, 3, 3, 64, True)     # not a first layer
    assert not plan.im2row_forward(192, 16, 1, 1, 16, True)    # 1x1
