"""Argument handling of the activation ops, shared by :mod:`nbconv.functional.activation` and
:mod:`nbconv.cuda.activation`: the leaky slope, the softmax axis, the dropout generator."""

from __future__ import annotations

import numbers

import numpy as np

from . import check_real


def check_slope(op: str, negative_slope) -> float:
    return check_real(op, "negative_slope", negative_slope)


def softmax_axis(op: str, axis, ndim: int, shape) -> int:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (numbers.Integral,)):
        raise TypeError(f"{op}: argument 'axis' must be an int, got {axis!r}")
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{op}: argument 'axis' is {axis}, out of range for an input of shape {tuple(shape)}"
        )
    return axis % ndim


def dropout_generator(op: str, rng) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (numbers.Integral,)) and not isinstance(rng, (bool, np.bool_)):
        if rng < 0:
            raise ValueError(f"{op}: argument 'rng' must be a non-negative seed, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"{op}: argument 'rng' must be None, an int seed or a numpy.random.Generator, "
        f"got {type(rng).__name__}"
    )
