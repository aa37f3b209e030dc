"""Argument handling of the fully connected op, shared by :mod:`nbconv.functional.linear` and
:mod:`nbconv.cuda.linear`."""

from __future__ import annotations

import numpy as np

from . import check_ndim


def check_x_weight(op: str, x: np.ndarray, weight: np.ndarray) -> None:
    if x.ndim < 1:
        raise ValueError(
            f"{op}: argument 'x' must be at least 1-D (..., in_features), got shape ()"
        )
    check_ndim(op, "weight", weight, 2, "(out_features, in_features)")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{op}: argument 'weight' has in_features={weight.shape[1]} but 'x' has "
            f"{x.shape[-1]} features in its last axis (x shape {tuple(x.shape)}, weight shape "
            f"{tuple(weight.shape)})"
        )


def check_linear_backward(op: str, dy, x, weight, bias) -> bool:
    """Check the shapes of a linear backward pass (host or device arrays, or their shape
    stand-ins) and return whether a bias gradient is wanted (``bias`` a bool or the array)."""
    check_x_weight(op, x, weight)
    expected = tuple(x.shape[:-1]) + (weight.shape[0],)
    if tuple(dy.shape) != expected:
        raise ValueError(
            f"{op}: argument 'dy' must have shape {expected} (x shape {tuple(x.shape)}, weight "
            f"shape {tuple(weight.shape)}), got {tuple(dy.shape)}"
        )
    if isinstance(bias, (bool, np.bool_)):
        return bool(bias)
    return bias is not None
