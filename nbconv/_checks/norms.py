"""Argument handling of group, instance and layer normalisation (:mod:`nbconv.functional.norms`
and the layers of :mod:`nbconv.nn.norms`): input layouts, ``num_groups``, ``normalized_shape``,
hyperparameters.  Pure Python, no numba."""

from __future__ import annotations

import math

from . import check_int, check_real

NORM_LAYOUT = "(N, C) or (N, C, *) (at least 2-D)"


def check_nc_x(op: str, name: str, x):
    """``x`` if it has a batch and a channel axis (at least 2-D)."""
    if x.ndim < 2:
        raise ValueError(f"{op}: argument '{name}' must be {NORM_LAYOUT}, got shape "
                         f"{tuple(x.shape)}")
    return x


def check_num_groups(op: str, num_groups, C: int | None = None, x_shape=None) -> int:
    """``num_groups`` as an int >= 1 that divides ``C`` (when given)."""
    G = check_int(op, "num_groups", num_groups, 1)
    if C is not None and C % G:
        where = f"'x' of shape {tuple(x_shape)}" if x_shape is not None else "num_channels"
        raise ValueError(f"{op}: the number of channels {C} ({where}) must be divisible by "
                         f"argument 'num_groups'={G}")
    return G


def check_eps(op: str, eps) -> float:
    """``eps`` (added to the variance) as a finite float >= 0."""
    return check_real(op, "eps", eps, 0.0)


def check_momentum(op: str, momentum) -> float:
    """A running-statistics ``momentum``: any finite real (PyTorch computes with values outside
    [0, 1] too: ``running = (1 - momentum) * running + momentum * batch_stat``)."""
    return check_real(op, "momentum", momentum)


def normalized_shape(op: str, shape) -> tuple[int, ...]:
    """``normalized_shape`` (an int or a non-empty sequence of ints >= 0) as a tuple."""
    if isinstance(shape, (tuple, list)):
        if len(shape) == 0:
            raise ValueError(f"{op}: argument 'normalized_shape' must have at least one "
                             "dimension, got ()")
        return tuple(check_int(op, "normalized_shape", d, 0) for d in shape)
    return (check_int(op, "normalized_shape", shape, 0),)


def check_trailing(op: str, x_shape, shape: tuple[int, ...]) -> tuple[int, int]:
    """``(rows, row length)`` of ``x`` normalised over its trailing ``shape``, which must match."""
    k = len(shape)
    if len(x_shape) < k or tuple(x_shape[len(x_shape) - k:]) != shape:
        raise ValueError(
            f"{op}: argument 'normalized_shape'={list(shape)} must match the trailing "
            f"dimensions of 'x', expected shape [*, {', '.join(map(str, shape))}], got "
            f"{tuple(x_shape)}")
    return math.prod(x_shape[:len(x_shape) - k]), math.prod(shape)
