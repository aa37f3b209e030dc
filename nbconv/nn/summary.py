"""A torchinfo-style model summary: every module, its output shape for an input size, and
parameter counts."""

from __future__ import annotations

import numpy as np

from ._input_dtype import model_dtype
from .modes import no_grad

__all__ = ["summary", "Summary"]


class Summary:
    """What :func:`summary` found; ``str()``/``repr()`` give the table.

    Attributes
    ----------
    rows : list of dict
        One per module, depth first: ``name`` (dotted key prefix, ``""`` for the model),
        ``type``, ``depth``, ``output_shape`` (a tuple, a tuple of tuples for several outputs,
        or None when the module did not run), ``params`` (values in it and its sub-modules).
    total_params : int
        Trainable values, each shared parameter counted once.
    param_bytes : int
        Memory of the parameters.
    input_size : tuple or None
    """

    def __init__(self, rows, total_params, param_bytes, input_size, dtype):
        self.rows = rows
        self.total_params = total_params
        self.param_bytes = param_bytes
        self.input_size = input_size
        self.dtype = dtype

    def __str__(self) -> str:
        cells = []
        for r in self.rows:
            label = "  " * r["depth"] + (f"{r['name'].rpartition('.')[2]} ({r['type']})"
                                         if r["depth"] else r["type"])
            shape = "--" if r["output_shape"] is None else _shape_text(r["output_shape"])
            cells.append((label, shape, f"{r['params']:,}"))
        head = ("Layer (type)", "Output shape", "Param #")
        w0 = max(len(head[0]), *(len(c[0]) for c in cells))
        w1 = max(len(head[1]), *(len(c[1]) for c in cells))
        w2 = max(len(head[2]), *(len(c[2]) for c in cells))
        rule = "=" * (w0 + w1 + w2 + 4)
        lines = [f"{head[0]:<{w0}}  {head[1]:<{w1}}  {head[2]:>{w2}}", rule]
        lines += [f"{a:<{w0}}  {b:<{w1}}  {c:>{w2}}" for a, b, c in cells]
        lines += [rule, f"Total params: {self.total_params:,}",
                  f"Params size: {self.param_bytes / 2**20:.2f} MiB"]
        if self.input_size is not None:
            lines.append(f"Input size: {tuple(self.input_size)} {np.dtype(self.dtype).name}")
        return "\n".join(lines)

    __repr__ = __str__


def _shape_text(shape) -> str:
    if shape and isinstance(shape[0], tuple):
        return ", ".join(str(s) for s in shape)
    return str(shape)


def _shape_of(y):
    if isinstance(y, (tuple, list)):
        return tuple(tuple(np.shape(v)) for v in y)
    return tuple(np.shape(y))


def summary(model, input_size=None, *, dtype=None) -> Summary:
    """Layers, output shapes and parameter counts of ``model``, like ``torchinfo.summary``.

    With ``input_size`` the model runs once on zeros of that shape, in eval mode and under
    :func:`nbconv.no_grad` (nothing is cached or updated: batch norm's running statistics
    and every module's mode are left as they were), and each module's output shape is
    recorded.

    Parameters
    ----------
    model : nbconv.nn.Module
    input_size : tuple of int, optional
        The input's shape including the batch axis, e.g. ``(1, 1, 28, 28)``.
    dtype : float32 or float64, optional
        Of the zeros fed to the model; by default the model's own (float32 for a model
        without parameters).

    Returns
    -------
    Summary
        Prints as a table; also holds the numbers (``rows``, ``total_params``).

    Examples
    --------
    >>> import nbconv as nc
    >>> net = nc.nn.Sequential(nc.nn.Conv2d(1, 4, 3), nc.nn.ReLU(), nc.nn.Flatten(),
    ...                        nc.nn.Linear(4 * 26 * 26, 10))
    >>> print(nc.nn.summary(net, (1, 1, 28, 28)))
    Layer (type)   Output shape    Param #
    ======================================
    Sequential     (1, 10)          27,090
      0 (Conv2d)   (1, 4, 26, 26)       40
      1 (ReLU)     (1, 4, 26, 26)        0
      2 (Flatten)  (1, 2704)             0
      3 (Linear)   (1, 10)          27,050
    ======================================
    Total params: 27,090
    Params size: 0.10 MiB
    Input size: (1, 1, 28, 28) float32
    """
    if not all(callable(getattr(model, m, None)) for m in ("named_modules", "parameters")):
        raise TypeError(f"summary: argument 'model' must be an nbconv.nn.Module, got "
                        f"{type(model).__name__}")
    mods = list(model.named_modules())
    shapes: dict[int, object] = {}
    if input_size is not None:
        try:
            size = tuple(int(s) for s in input_size)
        except (TypeError, ValueError):
            raise TypeError(f"summary: argument 'input_size' must be a tuple of ints, got "
                            f"{input_size!r}") from None
        if any(s < 0 for s in size):
            raise ValueError(f"summary: argument 'input_size' {size} has a negative size")
        if dtype is None:
            dtype = model_dtype(model)
            dtype = np.float32 if dtype is None else dtype
        _run(mods, model, np.zeros(size, dtype), shapes)
    rows = []
    for name, m in mods:
        own = sum(int(np.prod(np.shape(p.data))) for p in m.parameters())
        rows.append(dict(name=name, type=type(m).__name__, depth=name.count(".") + 1 if name
                         else 0, output_shape=shapes.get(id(m)), params=own))
    params = model.parameters()
    total = sum(int(np.prod(np.shape(p.data))) for p in params)
    nbytes = sum(int(np.prod(np.shape(p.data))) * np.dtype(p.data.dtype).itemsize
                 for p in params)
    return Summary(rows, total, nbytes, None if input_size is None else size, dtype)


def _run(mods, model, x, shapes) -> None:
    """One forward pass with every module's ``forward`` wrapped to record its output shape
    (fused ``Sequential`` pairs run one by one, so that each layer reports its own)."""
    modes = [(m, m.training) for _, m in mods]

    def recording(m):
        forward = type(m).forward.__get__(m)

        def wrapper(*args):
            y = forward(*args)
            shapes.setdefault(id(m), _shape_of(y))
            return y
        return wrapper

    try:
        for _, m in mods:
            m.__dict__["forward"] = recording(m)
            m.__dict__["_forward_through"] = lambda after, x: None
        model.eval()
        with no_grad():
            model.forward(x)
    finally:
        for m, mode in modes:
            m.__dict__.pop("forward", None)
            m.__dict__.pop("_forward_through", None)
            m.training = mode
