"""Whole-model files: :func:`save` writes a model's architecture (as the JSON of
:mod:`nbconv.nn.config`) with its weights, optimizer state and metadata; :func:`load` and
:func:`load_state` rebuild the model from the file alone.  The file format itself -- atomic
writes, checksums, validated reads -- is :mod:`nbconv.io.hdf5`'s."""

from __future__ import annotations

import json

import numpy as np

from ..nn.config import from_config, to_config
from ..nn.module import Module, placeholders
from . import hdf5

__all__ = ["save", "load", "load_state"]


def _check_model(model) -> None:
    if not isinstance(model, Module):
        raise TypeError(f"save: argument 'model' must be an nbconv.nn.Module, got "
                        f"{type(model).__name__}")


def save(model, path, optimizer=None, metadata=None) -> None:
    """Write ``model`` (architecture + weights), optionally an optimizer and metadata, to HDF5.

    The write is crash-safe: the file is written under a temporary name in the same directory,
    fsync'ed and renamed onto ``path``, so a crash at any moment leaves either the previous file
    or the new one, never a partial file.  The temporary file of a process killed mid-save
    (``.<name>.<host>.<pid>.<random>.tmp``) is removed by the next save of the same path.

    Parameters
    ----------
    model : nbconv.nn.Module
        Every layer must be registered with :func:`nbconv.nn.register` (all built-in layers
        are); all floating parameters and buffers must share one dtype (float32 or float64).
    path : str or os.PathLike
        The target file; replaced atomically if it exists.
    optimizer : nbconv.optim.Optimizer or dict, optional
        An optimizer (its ``state_dict()`` is stored) or such a state dict, to resume training
        with :func:`load_state`.
    metadata : dict, optional
        str keys; values are JSON data (numbers, strings, bools, None, lists, str-keyed dicts)
        or top-level NumPy arrays/scalars (e.g. normalisation ``mean``/``std``).  Returned
        unchanged by :func:`load_state` (tuples come back as lists, NumPy scalars nested in
        lists or dicts as Python numbers).

    Raises
    ------
    TypeError
        When a layer is not registered, or a metadata value (named in the message) or an
        optimizer hyperparameter is not serialisable.  Nothing is written then.
    ValueError
        On mixed float dtypes or state-dict keys that cannot be HDF5 paths.

    Examples
    --------
    >>> import os, tempfile, numpy as np, nbconv as nc, nbconv.nn, nbconv.io
    >>> net = nc.nn.Sequential(nc.nn.Conv2d(1, 2, 3), nc.nn.Flatten(), nc.nn.Linear(8, 3))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "net.h5")
    ...     nc.io.save(net, path, metadata={"epoch": 3, "mean": np.array([0.5])})
    ...     net2 = nc.io.load(path)
    ...     _, opt_state, meta = nc.io.load_state(path)
    >>> all(np.array_equal(a, net2.state_dict()[k]) for k, a in net.state_dict().items())
    True
    >>> meta["epoch"], meta["mean"], opt_state
    (3, array([0.5]), None)
    """
    _check_model(model)
    state = model.state_dict()
    hdf5._check_state(state)
    dtype = hdf5._model_dtype(state, strict=True)
    architecture = json.dumps(to_config(model))
    opt = hdf5._prepare_optimizer(optimizer)
    meta = hdf5._prepare_metadata(metadata)

    def write(f):
        hdf5._root_attrs(f, "model", dtype)
        hdf5._set_json(f, "architecture", architecture)
        hdf5._write_weights(f, state)
        if opt is not None:
            kind, hyper, step, arrays, groups = opt
            g = f.create_group("optimizer")
            hdf5._set_str(g, "type", kind)
            hdf5._set_json(g, "hyper", hyper)
            if groups is not None:
                hdf5._set_json(g, "param_groups", groups)
            g.attrs["step"] = np.int64(step)
            s = g.create_group("state")
            for k, arr in arrays.items():
                hdf5._write_array(s, k, arr)
        if meta is not None:
            keys, values, arrays = meta
            g = f.create_group("metadata")
            hdf5._set_json(g, "keys", json.dumps(keys))
            hdf5._set_json(g, "values", values)
            for k, (arr, is_scalar) in arrays.items():
                ds = hdf5._write_array(g, k, arr)
                if is_scalar:
                    ds.attrs["numpy_scalar"] = True

    hdf5._atomic_write(path, write)


def _read_model(r: hdf5._Reader):
    if r.kind != "model" or "architecture" not in r.f.attrs:
        r.fail("a weights-only file (no 'architecture'); build the model and call "
               "model.load_weights(path) instead")
    if r.dtype not in hdf5._FLOAT_DTYPES:
        r.fail(f"unsupported model dtype {r.dtype!r} (expected one of {list(hdf5._FLOAT_DTYPES)})")
    cfg = r.attr_json(r.f, "architecture")
    try:
        # parameters as zero-memory stand-ins: an architecture asking for huge layers cannot
        # make load allocate anything before its sizes are checked against the datasets
        with placeholders():
            model = from_config(cfg)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        r.fail(f"cannot rebuild the architecture ({hdf5._why(e)})")
    state = hdf5._read_validated(r, model, float_dtype=r.dtype)
    # the file's arrays replace the stand-ins
    for key, (m, name) in hdf5._model_arrays(model).items():
        arr = np.array(state[key], order="C")  # a writeable copy of our own
        if name in m._params:
            m._params[name].data, m._params[name].grad = arr, np.zeros_like(arr)
        else:
            m._buffers[name] = arr
    return model


def load(path):
    """Rebuild a model saved by :func:`save` from the file alone.

    The architecture is rebuilt from its JSON description (only registered layer classes; no
    code from the file is executed), converted to the stored dtype, and every weight is checked
    for name, shape and dtype before it is loaded.  The model comes back in training mode, like
    a freshly constructed one; call ``model.eval()`` for inference.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    model : nbconv.nn.Module

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    FormatError
        On anything else that keeps the file from loading: not HDF5, truncated, a checksum
        mismatch, a foreign or weights-only file, an unsupported ``format_version``, a bad
        architecture, missing/unexpected/misshaped weights.
    """
    with hdf5._Reader(path) as r:
        return hdf5._guard(r.path, lambda: _read_model(r))


def load_state(path):
    """Everything :func:`save` wrote: ``(model, optimizer_state, metadata)``.

    Returns
    -------
    model : nbconv.nn.Module
        As :func:`load` returns it.
    optimizer_state : dict or None
        Exactly what ``optimizer.state_dict()`` returned at save time (``None`` if no optimizer
        was saved); ``opt.load_state_dict(optimizer_state)`` resumes training (it checks the
        state's shapes against its parameters).
    metadata : dict
        The saved metadata (``{}`` if none), in its original key order.

    Raises
    ------
    FileNotFoundError, FormatError
        As :func:`load`.
    """
    with hdf5._Reader(path) as r:
        def read():
            return _read_model(r), r.read_optimizer(), r.read_metadata()

        return hdf5._guard(r.path, read)
