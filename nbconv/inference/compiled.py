"""``nbconv.compile``: a model's forward pass planned once for CPU inference."""

from __future__ import annotations

import numbers
from collections import OrderedDict

import numpy as np

from .._blas import single_threaded_blas
from .._checks.conv import ALGORITHMS
from .._dispatch import is_device_array
from ..nn import modes
from ..nn._input_dtype import cast_inputs, model_dtype
from ..nn.module import Module
from .fuse import fuse
from .plan import Plan
from .trace import trace

__all__ = ["compile", "CompiledModel"]

#: batch sizes whose plans a compiled model keeps (the least recently used one goes first)
MAX_PLANS = 4


def compile(model, input_shape, *, algorithm="auto"):
    """Plan ``model``'s forward pass once for fast CPU inference.

    The model is traced into steps (``Sequential`` and ``Graph`` containers opened up), then
    everything is decided once: an inference batch norm after a convolution is folded into the
    convolution's weights and bias; a ReLU after a convolution, a linear layer or a residual
    ``Add`` runs in that step's pass; ``Flatten`` is a view; ``Dropout`` and ``Identity`` are
    gone; each convolution's plan is chosen and its weights laid out for its kernels; maps
    between tap-GEMM layers stay rows of channels ``(H, W, N, C)``, those kernels' own layout
    (pools, sums and concatenations work on them directly: :mod:`nbconv.inference.layouts`);
    and every intermediate result gets a buffer allocated once per input shape and reused by
    later layers (once its last reader ran) and by later calls.  A module this does not
    handle (a subclass with its own ``forward``, any other layer) runs as one opaque step:
    its ``forward`` is called under ``no_grad``.
    :meth:`CompiledModel.explain` lists the steps.

    The model is put in eval mode (inference).  The compiled model follows later changes made
    through nbconv (optimizer steps, ``load_state_dict``, ``nn.init``, assigning a parameter's
    ``data``, adding layers, ``astype``, ``eval``): it traces and plans again at its next call
    (layers added in training mode are put in eval mode).  Calling it while the model is in
    training mode (``model.train()`` after compiling) raises ``RuntimeError``.
    Writing into a parameter's array directly (``p.data[...] = v``) is not seen (the
    compiled model holds its own folded and packed copies of the weights): call
    :meth:`CompiledModel.refresh` after doing that.

    Parameters
    ----------
    model : nbconv.nn.Module
        A model on the host (NumPy arrays); float32 or float64.
    input_shape : tuple of int
        The full input shape, batch first: ``(N, C, H, W)`` for an image model.  A call with
        another batch size ``N`` plans again for it (a few plans are kept); the other
        dimensions are fixed.
    algorithm : {"auto", "direct", "im2col", "winograd", "tapgemm"}, keyword-only
        The convolution algorithm of every layer, as in :func:`nbconv.conv2d`.

    Returns
    -------
    CompiledModel
        ``cm(x)``, ``x`` of shape ``(N', *input_shape[1:])``, returns what
        ``model.eval(); with nbconv.no_grad(): model(x)`` returns, to float32 rounding, as a
        fresh array owned by the caller.

    Raises
    ------
    TypeError
        ``model`` is not a Module, holds CUDA device arrays (compile is CPU only), or
        ``input_shape`` is not a sequence of ints.
    ValueError
        ``input_shape`` has a negative batch size or a dimension < 1, an unknown
        ``algorithm``, or the model rejects inputs of that shape (its own error).

    Examples
    --------
    >>> import numpy as np, nbconv as nc
    >>> net = nc.models.lenet5(activation="relu")
    >>> cm = nc.compile(net, (8, 1, 28, 28))
    >>> x = np.random.default_rng(0).standard_normal((8, 1, 28, 28), dtype=np.float32)
    >>> with nc.no_grad():
    ...     expected = net(x)
    >>> np.allclose(cm(x), expected, rtol=1e-4, atol=1e-5)
    True
    >>> cm(x[:3]).shape  # another batch size: planned on first use
    (3, 10)
    """
    return CompiledModel(model, input_shape, algorithm=algorithm)


class CompiledModel:
    """A model planned for inference by :func:`nbconv.compile`; call it as the model.

    Not thread-safe: the planned buffers are shared by calls (use one per thread).
    """

    def __init__(self, model, input_shape, *, algorithm="auto"):
        op = "nbconv.compile"
        if not isinstance(model, Module):
            raise TypeError(f"{op}: argument 'model' must be an nbconv.nn.Module, got "
                            f"{type(model).__name__}")
        self.input_shape = _shape(op, input_shape)
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise ValueError(f"{op}: argument 'algorithm' must be one of "
                             f"{ALGORITHMS}, got {algorithm!r}")
        _check_host(op, model)
        self.model = model
        self.algorithm = algorithm
        self.dtype = model_dtype(model) or np.dtype(np.float32)
        self._plans: OrderedDict = OrderedDict()
        self.refresh()
        self._plan(self.input_shape[0])

    # -- state ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Trace and fuse the model again from its current parameters, buffers and layers
        (forgetting every plan).  Calls do this by themselves after any change made through
        nbconv; call it after writing into a parameter's array directly."""
        model = self.model
        if any(m.training for m in model.modules()):
            model.eval()
        _check_host("nbconv.compile", model)
        self.dtype = model_dtype(model) or np.dtype(np.float32)
        steps, out = trace(model)
        self._steps, self._out = fuse(steps, out)
        self._plans.clear()
        self._last_shape = self._last_plan = None  # (the next call takes the checked path)
        self._version = modes.state_version()

    def _follow(self) -> None:
        """Called when some model state changed since the plans were made."""
        if self.model.training:
            raise RuntimeError(
                f"compiled model: the model ({type(self.model).__name__}) is in training mode "
                "(model.train() was called after nbconv.compile); a compiled model runs "
                "inference only: call model.eval() to use it again")
        self.refresh()  # (puts layers added since in eval mode too)

    def _plan(self, n: int) -> Plan:
        plan = self._plans.get(n)
        if plan is None:
            with modes.no_grad():
                plan = Plan(self._steps, self._out, (n, *self.input_shape[1:]), self.dtype,
                            self.algorithm)
            self._plans[n] = plan
            if len(self._plans) > MAX_PLANS:
                self._plans.popitem(last=False)
            self._version = modes.state_version()  # (a module's forward may register things)
        else:
            self._plans.move_to_end(n)
        return plan

    # -- calls ------------------------------------------------------------------------------
    def __call__(self, x):
        """Run the planned forward pass on ``x`` (shape ``(N, *input_shape[1:])``, any
        ``N``); returns a fresh array (or the model's own result)."""
        if (modes._version[0] == self._version and type(x) is np.ndarray
                and x.shape == self._last_shape and x.dtype is self.dtype
                and x.flags.c_contiguous):
            plan = self._last_plan  # an input like the last call's: no checks to make
        else:
            x, plan = self._input_and_plan(x)
        vals = plan.vals
        vals[0] = x
        if plan.opaque:
            with modes.no_grad():
                for run in plan.runs:
                    run(vals)
        elif plan.blas_held:
            with single_threaded_blas():  # once per call, not once per product
                for run in plan.runs:
                    run(vals)
        else:
            for run in plan.runs:
                run(vals)
        y = vals[plan.out]
        vals[0] = None  # keep neither the caller's array nor opaque results alive
        for v in plan.transient:
            vals[v] = None
        return y.copy() if isinstance(y, np.ndarray) else y

    forward = __call__

    def _input_and_plan(self, x):
        """``x`` as the kernels take it (host, the model's dtype, C order, checked) and the
        plan for its batch size; remembered for the next call's quick path."""
        if modes._version[0] != self._version:
            self._follow()
        if type(x) is not np.ndarray:
            x = _host_input(x)
        if x.dtype != self.dtype:
            x = _cast(self.model, x, self.dtype)
        shape = x.shape
        if len(shape) != len(self.input_shape) or shape[1:] != self.input_shape[1:]:
            raise ValueError(
                f"compiled model: argument 'x' has shape {tuple(shape)} but the model was "
                f"compiled for input shape {self.input_shape} (any batch size, the other "
                f"dimensions {self.input_shape[1:]})")
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        plan = self._plans.get(shape[0])
        if plan is None or next(reversed(self._plans)) != shape[0]:
            plan = self._plan(shape[0])
        self._last_shape, self._last_plan = shape, plan
        return x, plan

    # -- description ------------------------------------------------------------------------
    def explain(self, batch: int | None = None) -> str:
        """The steps planned for batch size ``batch`` (default: the compiled shape's): layer,
        op (a convolution's algorithm), fused layers, output shape and buffer; modules run
        as they are say so ("opaque")."""
        n = self.input_shape[0] if batch is None else batch
        plan = self._plan(n)
        rows = [("layer", "op", "fused", "output shape", "memory")]
        rows += [(a, b, c or "-", str(d), e) for a, b, c, d, e in plan.rows]
        widths = [max(len(r[k]) for r in rows) for k in range(4)]
        lines = [f"CompiledModel({type(self.model).__name__}, input {(n, *self.input_shape[1:])}"
                 f", {self.dtype.name}, algorithm={self.algorithm!r}): {len(plan.rows)} steps, "
                 f"{plan.nslots} buffers, {plan.nbytes / 2**20:.2f} MiB"]
        for r in rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.explain()


def _shape(op, input_shape) -> tuple:
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__"):
        raise TypeError(f"{op}: argument 'input_shape' must be a tuple of ints (N, C, H, W), "
                        f"got {type(input_shape).__name__}")
    dims = tuple(input_shape)
    if not dims or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool)
                           for d in dims):
        raise TypeError(f"{op}: argument 'input_shape' must be a non-empty tuple of ints "
                        f"(N, C, H, W), got {input_shape!r}")
    dims = tuple(int(d) for d in dims)
    if dims[0] < 0 or any(d < 1 for d in dims[1:]):
        raise ValueError(f"{op}: argument 'input_shape' {dims} must have a batch size >= 0 and "
                         "every other dimension >= 1")
    return dims


def _check_host(op, model) -> None:
    for _, m in model.named_modules():
        arrays = [p.data for p in m._params.values()] + list(m._buffers.values())
        if any(is_device_array(a) for a in arrays):
            raise TypeError(f"{op}: the model holds CUDA device arrays; compile is CPU only "
                            "(move the model to the host with nbconv.cuda.to_host)")


def _host_input(x):
    if is_device_array(x):
        raise TypeError("compiled model: argument 'x' is a CUDA device array; a compiled model "
                        "runs on the CPU only (pass a NumPy array)")
    return np.asarray(x)


def _cast(model, x, dtype):
    """``x`` in the model's dtype: floats and integers as the plain forward casts them (with
    its warning), anything else refused."""
    (x,) = cast_inputs(model, (x,))
    if x.dtype != dtype:
        if x.dtype.kind not in "biuf":
            raise TypeError(f"compiled model: argument 'x' has dtype {x.dtype}; expected a "
                            f"real array ({dtype.name})")
        x = x.astype(dtype)
    return x
