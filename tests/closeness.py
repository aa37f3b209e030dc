"""Test helper: closeness relative to the size of the expected values."""

from __future__ import annotations

import numpy as np


def assert_scaled_close(got, want, rtol: float) -> None:
    """``got`` equals ``want`` to ``rtol``, absolute errors allowed up to ``rtol`` times the
    largest magnitude in ``want`` (at least 1): sums of many terms lose digits relative to
    their largest term, not to each (possibly cancelled) result."""
    want = np.asarray(want)
    scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)
