"""Batch transforms for data augmentation and normalisation.

Convention: every factory here returns a callable ``t(xb, rng) -> xb`` that takes a whole batch
``xb`` of shape (N, C, H, W) and a ``numpy.random.Generator`` (the one `DataLoader` derives from
its seed, the epoch and the batch number) and returns a *new* array of the same shape and dtype;
the input is never modified. Random transforms draw one decision per image, in image order, from
``rng``; deterministic ones ignore ``rng``. Use `compose` to chain them.

>>> import numpy as np
>>> from nbconv.data import transforms as T
>>> t = T.compose(T.random_crop(2), T.random_horizontal_flip(), T.normalize(0.5, 0.25))
>>> xb = np.zeros((3, 1, 8, 8), np.float32)
>>> out = t(xb, np.random.default_rng(0))
>>> out.shape, out.dtype, float(out.max())
((3, 1, 8, 8), dtype('float32'), -2.0)
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["compose", "normalize", "random_crop", "random_horizontal_flip"]


def _batch(op: str, xb) -> np.ndarray:
    xb = np.asarray(xb)
    if xb.ndim != 4:
        raise ValueError(f"{op}: argument 'xb' must be a batch of shape (N, C, H, W), got shape "
                         f"{xb.shape}")
    return xb


def _nonneg_int(op: str, name: str, v) -> int:
    if not isinstance(v, (numbers.Integral, np.integer)) or isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{op}: argument '{name}' must be an int, got {v!r}")
    if v < 0:
        raise ValueError(f"{op}: argument '{name}' must be >= 0, got {v}")
    return int(v)


def random_crop(padding):
    """Zero-pad each image by ``padding`` and crop it back to its size at a random offset.

    For every image independently, offsets ``oy`` in ``0..2*ph`` and ``ox`` in ``0..2*pw`` are
    drawn (``rng.integers``, first all ``oy`` then all ``ox``) and the output is
    ``pad(x)[:, oy:oy+H, ox:ox+W]``, i.e. the image shifted by ``(ph - oy, pw - ox)`` pixels with
    zeros filling the vacated border (the usual CIFAR-10 "pad 4 and crop 32" augmentation).

    Parameters
    ----------
    padding : int or (int, int)
        Zero padding ``p`` (both axes) or ``(ph, pw)``; >= 0. 0 gives an unchanged copy.

    Returns
    -------
    callable
        ``t(xb, rng) -> out``: xb of shape (N, C, H, W) -> out of the same shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv.data.transforms import random_crop
    >>> xb = np.ones((2, 3, 5, 5), np.float32)
    >>> out = random_crop(1)(xb, np.random.default_rng(0))
    >>> out.shape, bool(((out == 0) | (out == 1)).all())
    ((2, 3, 5, 5), True)
    """
    op = "random_crop"
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise ValueError(f"{op}: argument 'padding' must be an int or a pair, got {padding!r}")
        ph, pw = (_nonneg_int(op, "padding", p) for p in padding)
    else:
        ph = pw = _nonneg_int(op, "padding", padding)

    def _random_crop(xb, rng):
        xb = _batch(op, xb)
        n, c, h, w = xb.shape
        oy = rng.integers(0, 2 * ph + 1, size=n)
        ox = rng.integers(0, 2 * pw + 1, size=n)
        padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=xb.dtype)
        padded[:, :, ph:ph + h, pw:pw + w] = xb
        out = np.empty_like(padded, shape=xb.shape)
        for i in range(n):
            out[i] = padded[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w]
        return out

    return _random_crop


def random_horizontal_flip(p: float = 0.5):
    """Mirror each image left-right (the last axis) with probability ``p``.

    Image ``i`` is flipped when ``u[i] < p`` with ``u = rng.random(N)``: ``p=1`` flips all,
    ``p=0`` none.

    Parameters
    ----------
    p : float in [0, 1], default 0.5

    Returns
    -------
    callable
        ``t(xb, rng) -> out``: xb of shape (N, C, H, W) -> out of the same shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv.data.transforms import random_horizontal_flip
    >>> xb = np.arange(3, dtype=np.float32).reshape(1, 1, 1, 3)
    >>> random_horizontal_flip(p=1.0)(xb, np.random.default_rng(0)).ravel().tolist()
    [2.0, 1.0, 0.0]
    """
    op = "random_horizontal_flip"
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, (numbers.Real, np.floating)) \
            or not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: argument 'p' must be a probability in [0, 1], got {p!r}")
    p = float(p)

    def _random_horizontal_flip(xb, rng):
        xb = _batch(op, xb)
        flip = rng.random(xb.shape[0]) < p
        out = xb.copy()
        out[flip] = xb[flip][..., ::-1]
        return out

    return _random_horizontal_flip


def normalize(mean, std):
    """Per-channel standardisation ``out[:, c] = (xb[:, c] - mean[c]) / std[c]``.

    Parameters
    ----------
    mean : float or sequence of C floats
    std : float or sequence of C floats, all > 0
        Scalars apply to every channel; sequences must have one entry per channel of the batch.

    Returns
    -------
    callable
        ``t(xb, rng) -> out``: xb of shape (N, C, H, W) -> out of the same shape; float32 and
        float64 batches keep their dtype, other dtypes give float32. ``rng`` is unused.

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv.data.transforms import normalize
    >>> xb = np.ones((1, 2, 1, 1), np.float32)
    >>> normalize([0.5, 2.0], [0.5, 4.0])(xb, None).ravel().tolist()
    [1.0, -0.25]
    """
    op = "normalize"
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(std, dtype=np.float64)
    for name, a in (("mean", m), ("std", s)):
        if a.ndim > 1 or a.size == 0:
            raise ValueError(f"{op}: argument '{name}' must be a scalar or a 1-D sequence, got "
                             f"shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{op}: argument '{name}' must be finite, got {a.tolist()}")
    if (s <= 0).any():
        raise ValueError(f"{op}: argument 'std' must be > 0, got {s.tolist()}")

    def _normalize(xb, rng=None):
        xb = _batch(op, xb)
        c = xb.shape[1]
        for name, a in (("mean", m), ("std", s)):
            if a.ndim == 1 and a.size != c:
                raise ValueError(f"{op}: argument '{name}' has {a.size} entries but the batch "
                                 f"has {c} channels (xb shape {xb.shape})")
        dt = xb.dtype if xb.dtype in (np.float32, np.float64) else np.dtype(np.float32)
        mm = m.astype(dt).reshape(1, -1, 1, 1) if m.ndim else m.astype(dt)
        ss = s.astype(dt).reshape(1, -1, 1, 1) if s.ndim else s.astype(dt)
        return ((xb.astype(dt, copy=False) - mm) / ss).astype(dt, copy=False)

    return _normalize


def compose(*transforms):
    """Chain transforms: ``compose(f, g)(xb, rng) == g(f(xb, rng), rng)``.

    Parameters
    ----------
    *transforms : callables ``t(xb, rng) -> xb``
        Applied left to right, all drawing from the same ``rng``.

    Returns
    -------
    callable
        ``t(xb, rng) -> out``. With no transforms, returns a copy of ``xb``.

    Examples
    --------
    >>> import numpy as np
    >>> from nbconv.data.transforms import compose, normalize
    >>> t = compose(normalize(1.0, 1.0), normalize(0.0, 2.0))
    >>> t(np.full((1, 1, 1, 1), 3.0), None).item()
    1.0
    """
    for i, t in enumerate(transforms):
        if not callable(t):
            raise TypeError(f"compose: argument {i} is not callable ({type(t).__name__})")
    transforms = tuple(transforms)

    def _compose(xb, rng):
        if not transforms:
            return np.array(xb, copy=True)
        for t in transforms:
            xb = t(xb, rng)
        return xb

    return _compose
