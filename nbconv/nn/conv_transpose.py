"""Transposed convolution layers: ``ConvTranspose2d`` and ``ConvTranspose1d``, with
PyTorch's names, arguments, weight layout and initialisation.

They run :func:`nbconv.conv_transpose2d` forward and :func:`nbconv.conv_transpose2d_backward`
backward (the 1-D ops for ``ConvTranspose1d``), keep only the input (and only while gradients
are on), and accumulate their parameters' gradients.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .._checks import check_bool, check_int, pair, single
from .._checks.conv_transpose import transpose_hyper
from ..functional import conv_transpose as _ct
from .init import uniform_fan_in
from .layers import _no_cache, _plain, _window_hyper
from .module import Module

__all__ = ["ConvTranspose2d", "ConvTranspose1d"]


class _ConvTransposeNd(Module):
    _ndim = 2
    _supports_need_dx = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 dtype=np.float32, rng=None):
        super().__init__()
        op = type(self).__name__
        ks = _window_hyper(op, self._ndim, kernel_size, stride, padding, dilation)
        norm = pair if self._ndim == 2 else (lambda o, n, v, m: (single(o, n, v, m),))
        ops = norm(op, "output_padding", output_padding, 0)
        strides, dilations = norm(op, "stride", stride, 1), norm(op, "dilation", dilation, 1)
        in_channels = check_int(op, "in_channels", in_channels, 1)
        out_channels = check_int(op, "out_channels", out_channels, 1)
        groups = check_int(op, "groups", groups, 1)
        bias = check_bool(op, "bias", bias)
        if padding_mode != "zeros":
            raise ValueError(f"{op}: argument 'padding_mode' must be 'zeros' (the only mode of "
                             f"transposed convolutions, as in PyTorch), got {padding_mode!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{op}: argument 'groups'={groups} must divide both in_channels={in_channels} "
                f"and out_channels={out_channels}")
        for o, s, d in zip(ops, strides, dilations):
            if o >= s and o >= d:
                raise ValueError(
                    f"{op}: argument 'output_padding' {_plain(output_padding)} must be smaller "
                    f"than either the stride {_plain(stride)} or the dilation "
                    f"{_plain(dilation)} along each axis")
        self._config = dict(in_channels=in_channels, out_channels=out_channels,
                            kernel_size=_plain(kernel_size), stride=_plain(stride),
                            padding=_plain(padding), output_padding=_plain(output_padding),
                            groups=groups, bias=bias, dilation=_plain(dilation),
                            padding_mode=padding_mode)
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.groups, self.dilation, self.padding_mode = groups, dilation, padding_mode
        self.kernel_size = ks
        self._hyper_of = (None, None)  # (the attributes, their TransposeHyper): see _hyper
        self._hyper(output_padding)
        # PyTorch's kaiming_uniform_(a=sqrt(5)): U(+-1/sqrt(fan_in)) with the fan-in it reads
        # from the weight's second axis, C_out // groups
        fan_in = out_channels // groups * int(np.prod(ks))
        wshape = (in_channels, out_channels // groups, *ks)
        self.weight = self._param("weight", uniform_fan_in(wshape, fan_in, dtype, rng))
        self.bias = (self._param("bias", uniform_fan_in((out_channels,), fan_in, dtype, rng))
                     if bias else None)
        self._x = None
        self._op = None  # the output_padding of the cached forward pass

    def _args(self, output_padding):
        return dict(stride=self.stride, padding=self.padding, output_padding=output_padding,
                    groups=self.groups, dilation=self.dilation)

    def _hyper(self, output_padding):
        """The hyperparameters with ``output_padding`` (the layer's own, or the one an
        ``output_size`` picked), validated once as a
        :class:`~nbconv._checks.conv_transpose.TransposeHyper` (again only after an attribute
        changed) for the functional's internal entries."""
        key = (self.stride, self.padding, self.groups, self.dilation)
        seen, h = self._hyper_of
        if key != seen:
            op = type(self).__name__
            s, p, d = self.stride, self.padding, self.dilation
            if self._ndim == 1:  # the 1-D op runs on images of height 1
                s, p, d = ((1, single(op, "stride", s, 1)), (0, single(op, "padding", p, 0)),
                           (1, single(op, "dilation", d, 1)))
            h = transpose_hyper(op, s, p, 0, self.groups, d)
            self._hyper_of = (key, h)
        norm = pair if self._ndim == 2 else (lambda o, n, v, m: (0, single(o, n, v, m)))
        oph, opw = norm(type(self).__name__, "output_padding", output_padding, 0)
        return h._replace(oph=oph, opw=opw)

    def _host(self, *arrays):
        """Whether ``arrays`` and the parameters are host arrays: the internal entries then
        run (others go through the public op, which dispatches device and recorded arrays)."""
        return (all(type(a) is np.ndarray for a in arrays)
                and type(self.weight.data) is np.ndarray
                and (self.bias is None or type(self.bias.data) is np.ndarray))

    def _output_padding(self, x, output_size):
        """``output_padding`` itself, or the one that gives ``output_size`` (PyTorch's rule:
        any size from the smallest output up to ``stride - 1`` more)."""
        if output_size is None:
            return self.output_padding
        op, nd = type(self).__name__, self._ndim
        sizes = [output_size] if np.ndim(output_size) == 0 else list(output_size)
        sizes = sizes[len(sizes) - nd:] if len(sizes) in (nd + 1, nd + 2) else sizes
        if len(sizes) != nd:
            raise ValueError(f"{op}: argument 'output_size' must have {nd} (or {nd + 2}) "
                             f"sizes, got {output_size!r}")
        norm = pair if nd == 2 else (lambda o, n, v, m: (single(o, n, v, m),))
        s, p, d = (norm(op, n, v, m) for n, v, m in (("stride", self.stride, 1),
                                                      ("padding", self.padding, 0),
                                                      ("dilation", self.dilation, 1)))
        spatial = np.shape(x)[-nd:]
        out = []
        for i in range(nd):
            want = check_int(op, "output_size", sizes[i], 1)
            least = (spatial[i] - 1) * s[i] - 2 * p[i] + d[i] * (self.kernel_size[i] - 1) + 1
            if not least <= want < least + s[i]:
                raise ValueError(
                    f"{op}: argument 'output_size' {tuple(sizes)} is not reachable from an "
                    f"input of spatial shape {tuple(spatial)}: axis {i} takes sizes "
                    f"{least} to {least + s[i] - 1}")
            out.append(want - least)
        return tuple(out) if nd == 2 else out[0]

    def forward(self, x, output_size=None):
        """``y``, shape (N, C_out, *out) (or unbatched); ``output_size`` (the spatial sizes,
        optionally with N and C first) picks the output padding, as PyTorch's."""
        op = self._output_padding(x, output_size)
        b = None if self.bias is None else self.bias.data
        if self._host(x):
            y = self._fn_layer(x, self.weight.data, b, hyper=self._hyper(op))
        else:
            y = self._fn(x, self.weight.data, b, **self._args(op))
        keep = self._keep()
        self._x, self._op = (x, op) if keep else (None, None)
        return y

    def backward(self, dy, need_dx=True):
        """``need_dx=False`` skips the input gradient (returns None): the first layer."""
        name = type(self).__name__
        if self._x is None:
            raise _no_cache(name)
        bias = self.bias is not None
        if self._host(dy, self._x):
            dx, dw, db = self._fn_backward_layer(dy, self._x, self.weight.data,
                                                 hyper=self._hyper(self._op), bias=bias,
                                                 need_dx=need_dx)
        else:
            dx, dw, db = self._fn_backward(dy, self._x, self.weight.data, bias=bias,
                                           need_dx=need_dx, **self._args(self._op))
        self.weight.accumulate_grad(dw, f"{name}.backward", owned=True)
        if db is not None:
            self.bias.accumulate_grad(db, f"{name}.backward", owned=True)
        return dx


class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution layer, as ``torch.nn.ConvTranspose2d``.

    Input (N, C_in, H, W) (or unbatched (C_in, H, W)) -> output (N, C_out, H_out, W_out) with
    ``H_out = (H - 1)*stride - 2*padding + dilation*(kernel_size - 1) + output_padding + 1``;
    weight (C_in, C_out // groups, kh, kw), bias (C_out,), both drawn from
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with ``fan_in = C_out // groups * kh * kw`` (PyTorch's
    default).  See :func:`nbconv.conv_transpose2d`.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, output_padding, dilation : int or (int, int)
        ``output_padding`` must be smaller than the stride or the dilation along each axis.
    groups : int
        Divides both channel counts.
    bias : bool
    padding_mode : {"zeros"}
        The only mode, as in PyTorch.
    dtype : numpy dtype
        Of the parameters (float32 by default).
    rng : numpy.random.Generator, optional
        For the initial values (default: the library generator, :func:`nbconv.manual_seed`).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> up = nc.nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
    >>> up.weight.shape, up(np.ones((2, 8, 5, 5), np.float32)).shape
    ((8, 4, 4, 4), (2, 4, 10, 10))
    >>> up(np.ones((2, 8, 5, 5), np.float32), output_size=(11, 11)).shape
    (2, 4, 11, 11)
    """

    _fn = staticmethod(F.conv_transpose2d)
    _fn_backward = staticmethod(F.conv_transpose2d_backward)
    _fn_layer = staticmethod(_ct._conv_transpose2d_layer)
    _fn_backward_layer = staticmethod(_ct._conv_transpose2d_backward_layer)


class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution layer, as ``torch.nn.ConvTranspose1d``: (N, C_in, L) (or
    (C_in, L)) -> (N, C_out, L_out), ``L_out = (L - 1)*stride - 2*padding +
    dilation*(kernel_size - 1) + output_padding + 1``; weight (C_in, C_out // groups, k).
    Arguments as :class:`ConvTranspose2d`'s, each an int (or a 1-tuple).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> nc.nn.ConvTranspose1d(3, 6, 3, stride=2)(np.ones((1, 3, 10), np.float32)).shape
    (1, 6, 21)
    """

    _ndim = 1
    _fn = staticmethod(F.conv_transpose1d)
    _fn_backward = staticmethod(F.conv_transpose1d_backward)
    _fn_layer = staticmethod(_ct._conv_transpose1d_layer)
    _fn_backward_layer = staticmethod(_ct._conv_transpose1d_backward_layer)
