"""Argument handling of batch normalisation, shared by :mod:`nbconv.functional.norm` and
:mod:`nbconv.cuda.norm`: input layouts, per-channel vectors, running buffers, hyperparameters."""

from __future__ import annotations

import numpy as np

from . import check_bool, check_real

BN_LAYOUT = "2-D (N, C), 3-D (N, C, L) or 4-D (N, C, H, W)"


def check_bn_x(op: str, name: str, x):
    """``x`` (host or device array) if it is (N, C), (N, C, L) or (N, C, H, W)."""
    if x.ndim not in (2, 3, 4):
        raise ValueError(
            f"{op}: argument '{name}' must be {BN_LAYOUT}, got shape {tuple(x.shape)}"
        )
    return x


def check_channel_vec(op: str, name: str, v, C: int, x_shape):
    """``v`` (host or device array) if it has shape (C,), one value per channel of ``x``."""
    if tuple(v.shape) != (C,):
        raise ValueError(
            f"{op}: argument '{name}' must have shape ({C},) = (C,), got {tuple(v.shape)} "
            f"(x shape {tuple(x_shape)})"
        )
    return v


def check_running(op: str, name: str, v, C: int, x_shape):
    """``v`` (host or device array) if it can hold a running statistic: float32/float64 of
    shape (C,)."""
    if np.dtype(v.dtype) not in (np.float32, np.float64):
        raise TypeError(f"{op}: argument '{name}' must be float32 or float64, got {v.dtype}")
    return check_channel_vec(op, name, v, C, x_shape)


def bn_hyper(op: str, momentum, eps, training) -> tuple[float, float, bool]:
    """``momentum`` (any finite real, as PyTorch's functional op computes with it) and
    ``eps`` (>= 0) of batch norm as floats and ``training`` as a bool (shared with the device
    version)."""
    if momentum is None:
        raise ValueError(
            f"{op}: argument 'momentum' is None (cumulative moving average), which is not "
            "supported; pass a float"
        )
    return (check_real(op, "momentum", momentum), check_real(op, "eps", eps, 0.0),
            check_bool(op, "training", training))
