"""The modern activation layers: PReLU, ELU, SELU, CELU, GELU, SiLU, Mish, Hardswish,
Hardsigmoid, ReLU6 and Softplus, with PyTorch's names, arguments and defaults.

Each is a thin class over its functional op (:mod:`nbconv.functional.activation_ext`): the
forward pass keeps its input while gradients are on, the backward pass calls the op's
``_backward``.  ``inplace`` (where PyTorch has it) is accepted and recorded but changes
nothing: nbconv never overwrites a layer's input (the backward pass reads it), so
``inplace=True`` gives the same output as ``inplace=False`` and leaves ``x`` as it was.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .._checks import check_bool, check_int, check_real
from ..functional.activation_ext import check_approximate
from .init import constant
from .layers import _Elementwise, _no_cache
from .module import Module

__all__ = ["PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Hardswish", "Hardsigmoid",
           "ReLU6", "Softplus"]


def _inplace(op: str, inplace) -> bool:
    return check_bool(op, "inplace", inplace)


class _Unary(_Elementwise):
    """An activation without hyperparameters: ``_op(x)`` forward, ``_op_backward(dy, x)``
    backward (``inplace`` accepted, see the module docstring)."""

    def __init__(self, inplace=False):
        super().__init__()
        self._config = dict(inplace=_inplace(type(self).__name__, inplace))

    def _fwd(self, x):
        return self._op(x)

    def _bwd(self, dy, x):
        return self._op_backward(dy, x)


class PReLU(Module):
    """Parametric ReLU, ``x`` where ``x > 0`` and ``weight * x`` elsewhere, as
    ``torch.nn.PReLU``: one learnable slope, or one per channel (axis 1 of the input).

    Parameters
    ----------
    num_parameters : int, default 1
        1, or the number of channels of the input.
    init : float, default 0.25
        Initial value of every slope.
    dtype : numpy dtype, default float32

    Shape: input (N, C, *) (any shape with one slope; fewer than 2 dimensions count as one
    channel), output the same; weight (num_parameters,).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> act = nc.nn.PReLU(2)
    >>> print(act(np.array([[-4.0, -4.0]], np.float32)))
    [[-1. -1.]]
    >>> print(act.backward(np.ones((1, 2), np.float32)), act.weight.grad)
    [[0.25 0.25]] [-4. -4.]
    """

    def __init__(self, num_parameters=1, init=0.25, dtype=np.float32):
        super().__init__()
        n = check_int("PReLU", "num_parameters", num_parameters, 1)
        self._config = dict(num_parameters=n, init=check_real("PReLU", "init", init))
        self.weight = self._param("weight", constant((n,), self._config["init"], dtype))
        self._x = None

    def forward(self, x):
        y = F.prelu(x, self.weight.data)
        self._x = x if self._keep() else None
        return y

    def backward(self, dy):
        if self._x is None:
            raise _no_cache("PReLU")
        dx, dw = F.prelu_backward(dy, self._x, self.weight.data)
        self.weight.accumulate_grad(dw, "PReLU.backward", owned=True)
        return dx


class ELU(_Elementwise):
    """``x`` where ``x > 0``, ``alpha * (exp(x) - 1)`` elsewhere, as ``torch.nn.ELU``.

    Parameters
    ----------
    alpha : float, default 1.0
    inplace : bool, default False
        Accepted for PyTorch compatibility; the input is never overwritten.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> print(nc.nn.ELU(alpha=2.0)(np.array([-np.inf, 1.0])))
    [-2.  1.]
    """

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self._config = dict(alpha=check_real("ELU", "alpha", alpha),
                            inplace=_inplace("ELU", inplace))

    def _fwd(self, x):
        return F.elu(x, self._config["alpha"])

    def _bwd(self, dy, x):
        return F.elu_backward(dy, x, self._config["alpha"])


class SELU(_Unary):
    """``scale * elu(x, alpha)`` with the self-normalising constants, as ``torch.nn.SELU``.

    Parameters
    ----------
    inplace : bool, default False
        Accepted for PyTorch compatibility; the input is never overwritten.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> print(nc.nn.SELU()(np.array([0.0, 2.0])))
    [0.         2.10140197]
    """

    _op = staticmethod(F.selu)
    _op_backward = staticmethod(F.selu_backward)


class CELU(_Elementwise):
    """``x`` where ``x > 0``, ``alpha * (exp(x / alpha) - 1)`` elsewhere, as ``torch.nn.CELU``.

    Parameters
    ----------
    alpha : float, default 1.0
        Not 0.
    inplace : bool, default False
        Accepted for PyTorch compatibility; the input is never overwritten.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> print(nc.nn.CELU(alpha=0.5)(np.array([-np.inf, 1.0])))
    [-0.5  1. ]
    """

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        alpha = check_real("CELU", "alpha", alpha)
        if alpha == 0.0:
            raise ValueError("CELU: argument 'alpha' must not be 0 (CELU divides by it)")
        self._config = dict(alpha=alpha, inplace=_inplace("CELU", inplace))

    def _fwd(self, x):
        return F.celu(x, self._config["alpha"])

    def _bwd(self, dy, x):
        return F.celu_backward(dy, x, self._config["alpha"])


class GELU(_Elementwise):
    """``x * Phi(x)`` (Phi the standard normal CDF), or its tanh approximation, as
    ``torch.nn.GELU``.

    Parameters
    ----------
    approximate : {"none", "tanh"}, default "none"

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> print(nc.nn.GELU()(np.array([-1.0, 0.0, 1.0])))
    [-0.15865525  0.          0.84134475]
    >>> print(nc.nn.GELU(approximate="tanh")(np.array([0.0, 1.0])))
    [0.         0.84119199]
    """

    def __init__(self, approximate="none"):
        super().__init__()
        self._config = dict(approximate=check_approximate("GELU", approximate))

    def _fwd(self, x):
        return F.gelu(x, self._config["approximate"])

    def _bwd(self, dy, x):
        return F.gelu_backward(dy, x, self._config["approximate"])


class SiLU(_Unary):
    """``x * sigmoid(x)`` (swish), as ``torch.nn.SiLU``.

    Parameters
    ----------
    inplace : bool, default False
        Accepted for PyTorch compatibility; the input is never overwritten.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> print(nc.nn.SiLU()(np.array([0.0, 1.0])))
    [0.         0.73105858]
    """

    _op = staticmethod(F.silu)
    _op_backward = staticmethod(F.silu_backward)


class Mish(_Unary):
    """``x * tanh(softplus(x))``, as ``torch.nn.Mish``.

    Parameters
    ----------
    inplace : bool, default False
        Accepted for PyTorch compatibility; the input is never overwritten.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> print(nc.nn.Mish()(np.array([0.0, 1.0])))
    [0.         0.86509839]
    """

    _op = staticmethod(F.mish)
    _op_backward = staticmethod(F.mish_backward)


class Hardswish(_Unary):
    """``x * min(max(x + 3, 0), 6) / 6`` (MobileNetV3), as ``torch.nn.Hardswish``.

    Parameters
    ----------
    inplace : bool, default False
        Accepted for PyTorch compatibility; the input is never overwritten.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> print(nc.nn.Hardswish()(np.array([-4.0, 1.5, 4.0])))
    [-0.     1.125  4.   ]
    """

    _op = staticmethod(F.hardswish)
    _op_backward = staticmethod(F.hardswish_backward)


class Hardsigmoid(_Unary):
    """``min(max(x + 3, 0), 6) / 6``, as ``torch.nn.Hardsigmoid``.

    Parameters
    ----------
    inplace : bool, default False
        Accepted for PyTorch compatibility; the input is never overwritten.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> print(nc.nn.Hardsigmoid()(np.array([-4.0, 1.5, 4.0])))
    [0.   0.75 1.  ]
    """

    _op = staticmethod(F.hardsigmoid)
    _op_backward = staticmethod(F.hardsigmoid_backward)


class ReLU6(_Unary):
    """``min(max(x, 0), 6)``, as ``torch.nn.ReLU6``.

    Parameters
    ----------
    inplace : bool, default False
        Accepted for PyTorch compatibility; the input is never overwritten.

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> print(nc.nn.ReLU6()(np.array([-1.0, 3.0, 7.0])))
    [0. 3. 6.]
    """

    _op = staticmethod(F.relu6)
    _op_backward = staticmethod(F.relu6_backward)


class Softplus(_Elementwise):
    """``log(1 + exp(beta * x)) / beta``, linear (``x``) where ``beta * x > threshold``, as
    ``torch.nn.Softplus``.

    Parameters
    ----------
    beta : float, default 1.0
    threshold : float, default 20.0

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> print(nc.nn.Softplus(beta=2.0)(np.array([0.0, 30.0])))
    [ 0.34657359 30.        ]
    """

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self._config = dict(beta=check_real("Softplus", "beta", beta),
                            threshold=check_real("Softplus", "threshold", threshold,
                                                 finite=False))

    def _fwd(self, x):
        return F.softplus(x, **self._config)

    def _bwd(self, dy, x):
        return F.softplus_backward(dy, x, **self._config)
