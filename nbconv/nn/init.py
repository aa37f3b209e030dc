"""PyTorch's default initialisation for convolutions and fully-connected layers.

``kaiming_uniform_(a=sqrt(5))`` on the weight, which works out to
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias.
"""

from __future__ import annotations

import math

import numpy as np

from .module import building_placeholders, default_rng, placeholder


def constant(shape, value, dtype) -> np.ndarray:
    """``numpy.full(shape, value, dtype)`` (a placeholder while building placeholders)."""
    if building_placeholders():
        return placeholder(shape, dtype)
    return np.full(shape, value, dtype)


def uniform_fan_in(shape, fan_in: int, dtype, rng=None) -> np.ndarray:
    """Draw ``shape`` from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in ``dtype``.

    Parameters
    ----------
    shape : tuple of int
    fan_in : int
        Inputs feeding one output (``in_channels // groups * kh * kw`` or ``in_features``).
    dtype : numpy dtype
    rng : numpy.random.Generator, optional
        Defaults to the library generator seeded by :func:`nbconv.manual_seed`.
    """
    if building_placeholders():
        return placeholder(shape, dtype)
    rng = default_rng() if rng is None else rng
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(dtype)
