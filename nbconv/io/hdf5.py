"""The nbconv HDF5 model file: architecture, weights, optimizer state and metadata.

Layout (``format_version`` 1)
-----------------------------
Root attributes

``format``
    The string ``"nbconv-model"``; any other value (or none) is a foreign file.
``format_version``
    The integer ``1``.  Readers refuse versions they do not know.
``nbconv_version``
    ``nbconv.__version__`` of the writer (informational).
``kind``
    ``"model"`` (written by :func:`save`) or ``"weights"`` (written by :func:`save_weights`).
``dtype``
    The floating dtype of the model's parameters, ``"float32"`` or ``"float64"``
    (``"mixed"`` in a weights-only file of a model that mixes them).
``architecture``
    Only in ``"model"`` files: ``json.dumps(nbconv.nn.to_config(model))``.

Group ``weights/``
    One dataset per state-dict entry; the key ``features.0.weight`` is the dataset
    ``weights/features.0/weight`` (the text before the last dot names a group, the text after it
    the dataset; a key without a dot is a dataset directly under ``weights/``).  Every dataset is
    chunked with the fletcher32 checksum filter.  A 0-d array (BatchNorm's
    ``num_batches_tracked``) cannot be chunked, so it is stored with shape ``(1,)`` and the
    attribute ``scalar = True``; readers reshape it back to ``()``.

Group ``optimizer/`` (optional)
    Attributes ``type`` (class name), ``hyper`` (JSON object of hyperparameters), ``step``
    (int) and ``param_groups`` (JSON list of ``Optimizer.state_dict()["param_groups"]``: each
    group's hyperparameters and parameter indices; files written before parameter groups lack
    it, and their ``hyper`` applies to every group); group ``optimizer/state/`` holds one
    fletcher32 dataset per entry of ``Optimizer.state_dict()["state"]``, named by its key
    (``"0.momentum_buffer"``; Adam's 0-d ``"0.step"`` as a scalar dataset).

Group ``metadata/`` (optional)
    Attribute ``keys``: JSON list of the keys in their original order.  Attribute ``values``:
    JSON object of the entries that are plain JSON data (``None``, bool, int, float -- NaN and
    infinities included -- str, lists and str-keyed dicts of those; tuples come back as lists).
    Each top-level NumPy array or NumPy scalar (``np.float32(1.5)``) is a fletcher32 dataset
    named by its key and comes back with the same dtype, shape and type (0-d arrays and NumPy
    scalars are stored as shape ``(1,)`` with ``scalar = True``; NumPy scalars additionally
    carry ``numpy_scalar = True``).  Keys of arrays must be non-empty and free of ``/``.

The file is written with ``libver=("v110", "latest")`` (readable by HDF5 >= 1.10, i.e. any
h5py since 2.8): its superblock, object headers and chunk indexes carry checksums too, so a
damaged byte either fails a checksum or is harmless.  Every string attribute is a
*fixed-length* UTF-8 string (h5py reads it back as ``bytes``: use ``.decode()``): HDF5 keeps
variable-length strings in a global heap that has no checksum, and a damaged global heap can
even hang the HDF5 library.  Each JSON attribute (``architecture``, ``hyper``, ``keys``,
``values``) also has a companion ``<name>_sha256`` attribute (hex SHA-256 of its UTF-8 text)
that readers verify when present.  Nothing in the file is ever executed: JSON is parsed
with :func:`json.loads` and layers are rebuilt only from the classes registered in
:mod:`nbconv.nn.config`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket

import numpy as np

from .._version import __version__

__all__ = ["save_weights", "load_weights", "FormatError", "FORMAT", "FORMAT_VERSION"]

FORMAT = "nbconv-model"
FORMAT_VERSION = 1
_SUPPORTED_VERSIONS = (1,)
_FLOAT_DTYPES = ("float32", "float64")
_ARRAY_KINDS = "biufc"  # bool, signed/unsigned int, float, complex


class FormatError(ValueError):
    """A file that is not a valid nbconv model file (foreign, truncated, corrupted, mismatched).

    A ``ValueError`` (as :class:`nbconv.data.IDXFormatError` is): the file's content is the bad
    value.

    Attributes
    ----------
    path : str
        The file.
    reason : str
        What is wrong with it.
    """

    def __init__(self, path, reason: str):
        self.path = os.fspath(path) if path is not None else None
        self.reason = str(reason)
        super().__init__(self.path, self.reason)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _h5py():
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is a hard dependency
        raise ImportError(
            "nbconv.io needs h5py to read and write model files: pip install h5py"
        ) from e
    return h5py


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def _key_to_path(key: str) -> tuple[str, str]:
    """State-dict key -> (group under weights/ or "", dataset name)."""
    group, _, name = key.rpartition(".")
    for part in (group, name):
        if "/" in part or part in (".", ".."):
            raise ValueError(f"save: state-dict key {key!r} cannot be stored as an HDF5 path "
                             "(layer and parameter names must not contain '/')")
    if not name:
        raise ValueError(f"save: state-dict key {key!r} has an empty parameter name")
    return group, name


def _write_array(h5group, name: str, value: np.ndarray):
    """One fletcher32-checksummed dataset; 0-d arrays as shape (1,) with ``scalar=True``."""
    arr = np.asarray(value)
    scalar = arr.ndim == 0  # (np.ascontiguousarray would already make it 1-d)
    arr = np.ascontiguousarray(arr)
    ds = h5group.create_dataset(name, data=arr.reshape(1) if scalar else arr, fletcher32=True,
                                chunks=True)
    if scalar:
        ds.attrs["scalar"] = True
    return ds


def _model_dtype(state: dict, strict: bool) -> str:
    kinds = sorted({np.asarray(v).dtype.name for v in state.values()
                    if np.asarray(v).dtype.kind == "f"})
    if not kinds:
        return "float32"
    if len(kinds) > 1 or kinds[0] not in _FLOAT_DTYPES:
        if strict:
            raise ValueError(f"save: the model mixes or uses unsupported float dtypes {kinds}; "
                             "convert it with model.astype('float32') or ('float64') first")
        return kinds[0] if len(kinds) == 1 else "mixed"
    return kinds[0]


def _check_state(state: dict) -> None:
    groups, names = set(), set()
    for key, v in state.items():
        arr = np.asarray(v)
        if arr.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(f"save: state-dict entry {key!r} has unsupported dtype {arr.dtype}")
        group, name = _key_to_path(key)
        groups.add(group)
        names.add((group, name))
    clash = sorted(n for g, n in names if g == "" and n in groups)
    if clash:
        raise ValueError(f"save: state-dict keys {clash} are both parameters and layer paths")


def _json_check(value, where: str):
    """Raise TypeError (naming ``where``) unless ``value`` survives JSON exactly.

    Returns the value with nested NumPy scalars converted to Python numbers.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)) and type(value) in (int, float):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_json_check(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"save: metadata {where} has a non-str dict key {k!r}; "
                                "only str keys survive JSON")
            out[k] = _json_check(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, np.ndarray):
        raise TypeError(f"save: metadata {where} is a NumPy array nested inside a list/dict; "
                        "only top-level metadata values may be arrays")
    raise TypeError(f"save: metadata {where} of type {type(value).__name__} is not "
                    "JSON-serialisable (use numbers, strings, lists, dicts or NumPy arrays)")


def _prepare_metadata(metadata):
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise TypeError(f"save: argument 'metadata' must be a dict, got "
                        f"{type(metadata).__name__}")
    values, arrays = {}, {}
    for key, v in metadata.items():
        if not isinstance(key, str):
            raise TypeError(f"save: metadata key {key!r} is not a str")
        if isinstance(v, (np.ndarray, np.generic)):
            arr = np.asarray(v)
            if arr.dtype.kind not in _ARRAY_KINDS:
                raise TypeError(f"save: metadata[{key!r}] has dtype {arr.dtype}; only bool, "
                                "int, float and complex arrays can be stored")
            if not key or "/" in key or key in (".", ".."):
                raise ValueError(f"save: metadata key {key!r} of an array cannot name an HDF5 "
                                 "dataset (must be non-empty, without '/')")
            arrays[key] = (np.array(v, copy=True), isinstance(v, np.generic))
        else:
            values[key] = _json_check(v, f"[{key!r}]")
    return list(metadata), json.dumps(values), arrays


def _prepare_optimizer(optimizer):
    if optimizer is None:
        return None
    state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
    if not isinstance(state, dict) or not {"type", "hyper", "step", "state"} <= set(state):
        raise TypeError("save: argument 'optimizer' must be an nbconv optimizer or its "
                        "state_dict() (a dict with 'type', 'hyper', 'step', 'state')")
    try:
        hyper = json.dumps(state["hyper"])
        groups = json.dumps(state["param_groups"]) if "param_groups" in state else None
    except (TypeError, ValueError) as e:
        raise TypeError(f"save: optimizer hyperparameters are not JSON-serialisable: {e}") from e
    arrays = {}
    for k, v in state["state"].items():
        arr = np.asarray(v)
        if not isinstance(k, str) or not k or "/" in k or k in (".", ".."):
            raise ValueError(f"save: optimizer state key {k!r} cannot name an HDF5 dataset")
        if arr.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(f"save: optimizer state {k!r} has unsupported dtype {arr.dtype}")
        arrays[k] = arr
    return str(state["type"]), hyper, int(state["step"]), arrays, groups


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _host_tag() -> str:
    """This machine's name as it appears in temporary file names (no dots or slashes)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _temporary_name(base: str, pid: int) -> str:
    """``.<base>.<host>.<pid>.<random>.tmp``: the writer's host and process id let the next
    save of the same path tell a dead writer's leftover from a live writer's file."""
    return f".{base}.{_host_tag()}.{pid}.{secrets.token_hex(6)}.tmp"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, under another user
        return True
    try:  # a killed child not yet reaped by its parent is a zombie: dead for our purpose
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _remove_stale_temporaries(directory: str, base: str) -> None:
    """Delete the temporary files that writers of ``base`` killed mid-save left behind: those
    named by :func:`_temporary_name` on this host whose process no longer runs.  Files of live
    writers, of other hosts and of other names are left alone; errors are ignored (the save
    itself does not depend on the clean-up)."""
    if os.name != "posix":
        return
    prefix, host = f".{base}.", _host_tag()
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        parts = name[len(prefix):-len(".tmp")].rsplit(".", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid() or _process_alive(pid):
            continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def _atomic_write(path, write) -> None:
    """Call ``write(h5file)`` on a temporary file next to ``path``, then ``os.replace`` it.

    The temporary file gets a unique name in the same directory (so the rename is atomic), is
    flushed and fsync'ed before the rename, and the directory is fsync'ed after it.  On any
    exception the temporary file is removed and an existing ``path`` is left untouched; a
    process killed mid-save cannot do that, so each save first removes the temporaries of
    dead writers of the same path (:func:`_remove_stale_temporaries`).
    """
    h5py = _h5py()
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    _remove_stale_temporaries(directory, base)
    while True:
        tmp = os.path.join(directory, _temporary_name(base, os.getpid()))
        try:  # O_EXCL: a unique name; mode 0o666 & ~umask as for an ordinary new file
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
            break
        except FileExistsError:
            continue
    try:
        os.close(fd)
        with h5py.File(tmp, "w", libver=("v110", "latest")) as f:
            write(f)
            f.flush()
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def _set_str(obj, name: str, text: str) -> None:
    """A fixed-length UTF-8 string attribute (never a variable-length one, see the module doc)."""
    h5py = _h5py()
    raw = str(text).encode("utf-8")
    obj.attrs.create(name, np.bytes_(raw), dtype=h5py.string_dtype("utf-8", max(len(raw), 1)))


def _set_json(obj, name: str, text: str) -> None:
    """A JSON attribute and its SHA-256 (``<name>_sha256``)."""
    _set_str(obj, name, text)
    _set_str(obj, f"{name}_sha256", hashlib.sha256(text.encode("utf-8")).hexdigest())


def _root_attrs(f, kind: str, dtype: str) -> None:
    _set_str(f, "format", FORMAT)
    f.attrs["format_version"] = np.int64(FORMAT_VERSION)
    _set_str(f, "nbconv_version", str(__version__))
    _set_str(f, "kind", kind)
    _set_str(f, "dtype", dtype)


def _write_weights(f, state: dict) -> None:
    root = f.create_group("weights")
    for key, value in state.items():
        group, name = _key_to_path(key)
        g = root.require_group(group) if group else root
        _write_array(g, name, value)


def _module_check(model, op: str):
    """``model`` must be an nbconv module (checked by its interface: this room sits below
    :mod:`nbconv.nn`, whose ``Module.save_weights`` calls it)."""
    if not all(callable(getattr(model, m, None))
               for m in ("state_dict", "load_state_dict", "named_modules")):
        raise TypeError(f"{op}: argument 'model' must be an nbconv.nn.Module, got "
                        f"{type(model).__name__}")


def save_weights(model, path) -> None:
    """Write only ``model.state_dict()`` (no architecture) to ``path``, crash-safely.

    Same layout as :func:`save` with root attribute ``kind = "weights"`` and no
    ``architecture``; load it into an existing model with :func:`load_weights`.

    Parameters
    ----------
    model : nbconv.nn.Module
    path : str or os.PathLike
    """
    _module_check(model, "save_weights")
    state = model.state_dict()
    _check_state(state)
    dtype = _model_dtype(state, strict=False)

    def write(f):
        _root_attrs(f, "weights", dtype)
        _write_weights(f, state)

    _atomic_write(path, write)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
class _Reader:
    """An open, format-checked nbconv file; every failure becomes :class:`FormatError`."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def __enter__(self):
        h5py = _h5py()
        # Surface FileNotFoundError / PermissionError / IsADirectoryError as themselves.
        with open(self.path, "rb"):
            pass
        try:
            self.f = h5py.File(self.path, "r")
        except Exception as e:
            raise FormatError(self.path, f"not a readable HDF5 file ({_why(e)})") from e
        try:
            _guard(self.path, self._check_root)
        except BaseException:
            self.f.close()
            raise
        return self

    def __exit__(self, *exc):
        self.f.close()
        return False

    def fail(self, reason: str):
        raise FormatError(self.path, reason)

    def attr_str(self, obj, name: str, required: bool = True):
        if name not in obj.attrs:
            if required:
                self.fail(f"attribute {name!r} missing on {obj.name!r}")
            return None
        v = obj.attrs[name]
        if isinstance(v, np.ndarray) and v.size == 1:
            v = v.reshape(())[()]
        if isinstance(v, (bytes, np.bytes_)):
            v = bytes(v).decode("utf-8")
        if not isinstance(v, str):
            self.fail(f"attribute {name!r} on {obj.name!r} is not a string: {v!r:.80}")
        return v

    def attr_int(self, obj, name: str):
        if name not in obj.attrs:
            self.fail(f"attribute {name!r} missing on {obj.name!r}")
        v = obj.attrs[name]
        if isinstance(v, np.ndarray) and v.size == 1:
            v = v.reshape(())[()]
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            self.fail(f"attribute {name!r} on {obj.name!r} is not an integer: {v!r:.80}")
        return int(v)

    def attr_json(self, obj, name: str):
        text = self.attr_str(obj, name)
        digest = self.attr_str(obj, f"{name}_sha256", required=False)
        if digest is not None and digest != hashlib.sha256(text.encode("utf-8")).hexdigest():
            self.fail(f"attribute {name!r} on {obj.name!r} fails its SHA-256 check "
                      "(the file is corrupted)")
        try:
            return json.loads(text)
        except ValueError as e:
            self.fail(f"attribute {name!r} on {obj.name!r} is not valid JSON ({e})")

    def _check_root(self):
        f = self.f
        fmt = f.attrs.get("format")
        if isinstance(fmt, (bytes, np.bytes_)):
            fmt = bytes(fmt).decode("utf-8", "replace")
        if fmt != FORMAT:
            self.fail(f"not an nbconv model file (HDF5 root attribute 'format' is {fmt!r}, "
                      f"expected {FORMAT!r})")
        version = self.attr_int(f, "format_version")
        if version not in _SUPPORTED_VERSIONS:
            self.fail(f"unsupported format_version {version} (this nbconv reads "
                      f"{list(_SUPPORTED_VERSIONS)}; a newer nbconv may read it)")
        self.kind = self.attr_str(f, "kind")
        if self.kind not in ("model", "weights"):
            self.fail(f"unknown file kind {self.kind!r}")
        self.dtype = self.attr_str(f, "dtype")

    def check_dataset(self, ds):
        """Fail unless ``ds`` is a plain dataset of a supported dtype whose declared size the
        file really stores (so reading it allocates no more than the file holds); reads no
        data.  Returns its logical shape (() for the scalars stored as (1,))."""
        h5py = _h5py()
        if not isinstance(ds, h5py.Dataset):
            self.fail(f"{ds.name!r} is a group where a dataset was expected")
        if ds.dtype.kind not in _ARRAY_KINDS or ds.dtype.itemsize > 16:
            self.fail(f"dataset {ds.name!r} has unsupported dtype {ds.dtype}")
        if ds.is_virtual or ds.external:
            self.fail(f"dataset {ds.name!r} refers to data outside this file")
        declared = ds.size * ds.dtype.itemsize
        stored = ds.id.get_storage_size()
        if stored < declared:  # nbconv never compresses, so a full dataset stores it all
            self.fail(f"dataset {ds.name!r} declares shape {ds.shape} ({declared} bytes) but "
                      f"the file stores only {stored} bytes of it (truncated or tampered)")
        scalar = bool(ds.attrs.get("scalar", False))
        if scalar and ds.shape != (1,):
            self.fail(f"scalar dataset {ds.name!r} has shape {ds.shape}, expected (1,)")
        return () if scalar else tuple(ds.shape)

    def read_array(self, ds):
        self.check_dataset(ds)
        try:
            arr = ds[()]  # fletcher32 mismatch, truncation: OSError here
        except Exception as e:
            self.fail(f"cannot read dataset {ds.name!r} ({_why(e)})")
        arr = np.asarray(arr)
        return arr.reshape(()) if bool(ds.attrs.get("scalar", False)) else arr

    def weight_datasets(self) -> dict:
        """``{state-dict key: dataset}`` of group ``weights/`` (no data read yet)."""
        h5py = _h5py()
        if "weights" not in self.f or not isinstance(self.f["weights"], h5py.Group):
            self.fail("group 'weights' missing")
        out = {}
        for name, obj in self.f["weights"].items():
            items = obj.items() if isinstance(obj, h5py.Group) else [(None, obj)]
            for pname, ds in items:
                if not isinstance(ds, h5py.Dataset):
                    self.fail(f"{ds.name!r} is a group where a dataset was expected")
                out[name if pname is None else f"{name}.{pname}"] = ds
        return out

    def read_optimizer(self):
        if "optimizer" not in self.f:
            return None
        g = self.f["optimizer"]
        out = {"type": self.attr_str(g, "type"), "hyper": self.attr_json(g, "hyper"),
               "step": self.attr_int(g, "step"), "state": {}}
        if not isinstance(out["hyper"], dict):
            self.fail("optimizer attribute 'hyper' is not a JSON object")
        if "param_groups" in g.attrs:  # absent in files written before parameter groups
            groups = self.attr_json(g, "param_groups")
            if not isinstance(groups, list) or not all(isinstance(x, dict) for x in groups):
                self.fail("optimizer attribute 'param_groups' is not a JSON list of objects")
            out["param_groups"] = groups
        if "state" in g:
            for k, ds in g["state"].items():
                out["state"][k] = self.read_array(ds)
        return out

    def read_metadata(self) -> dict:
        if "metadata" not in self.f:
            return {}
        g = self.f["metadata"]
        keys = self.attr_json(g, "keys")
        values = self.attr_json(g, "values")
        if not isinstance(keys, list) or not isinstance(values, dict):
            self.fail("metadata attributes 'keys'/'values' are not a JSON list/object")
        out = {}
        for k in keys:
            if not isinstance(k, str):
                self.fail(f"metadata key {k!r} is not a string")
            if k in values:
                out[k] = values[k]
            elif k in g:
                arr = self.read_array(g[k])
                out[k] = arr[()] if bool(g[k].attrs.get("numpy_scalar", False)) else arr
            else:
                self.fail(f"metadata entry {k!r} is listed but not stored")
        return out


def _why(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return f"{type(e).__name__}: {text}"


def _guard(path, func):
    """Run ``func()``; any failure to parse the file becomes FormatError with the path."""
    try:
        return func()
    except (FormatError, MemoryError):
        raise
    except Exception as e:
        raise FormatError(path, f"cannot read the file ({_why(e)})") from e


def _model_arrays(model) -> dict:
    """``{state-dict key: (module, name)}`` of every parameter and buffer (nothing copied)."""
    out = {}
    for prefix, m in model.named_modules():
        for name in list(m._params) + list(m._buffers):
            out[f"{prefix}.{name}" if prefix else name] = (m, name)
    return out


def _array_of(m, name):
    return m._params[name].data if name in m._params else m._buffers[name]


def _read_validated(r: _Reader, model, float_dtype=None) -> dict:
    """Check the file's weight datasets against ``model``'s parameters and buffers (keys,
    shapes, dtypes, stored sizes) *before* reading any of them; then read them.

    ``float_dtype``: the dtype every float array must have (a model file's own dtype);
    ``None``: the model's dtypes, float32 and float64 read into each other (cast).
    """
    datasets = r.weight_datasets()
    targets = _model_arrays(model)
    missing = sorted(set(targets) - set(datasets))
    extra = sorted(set(datasets) - set(targets))
    if missing or extra:
        r.fail(f"weights do not match the model: missing keys {missing}, unexpected keys "
               f"{extra}")
    for key, (m, name) in targets.items():
        want = _array_of(m, name)
        shape = r.check_dataset(datasets[key])
        if shape != tuple(want.shape):
            r.fail(f"weight {key!r} has shape {shape} in the file, the model expects "
                   f"{tuple(want.shape)}")
        got, expect = datasets[key].dtype, np.dtype(want.dtype)
        if float_dtype is not None and expect.kind == "f":
            expect = np.dtype(float_dtype)
        same_floats = float_dtype is None and got.kind == expect.kind == "f"
        if got != expect and not same_floats:
            r.fail(f"weight {key!r} has dtype {got} in the file, the model expects {expect}")
    out = {}
    for key, (m, name) in targets.items():
        arr = r.read_array(datasets[key])
        out[key] = arr.astype(_array_of(m, name).dtype) if float_dtype is None else arr
    return out


def load_weights(model, path) -> None:
    """Load the weights of a file written by :func:`save_weights` or :func:`save` into ``model``.

    No architecture is needed: the file's weights must have exactly the model's state-dict keys
    and shapes.  float32 weights load into a float64 model and vice versa (cast); any other
    dtype difference is an error.  The model is modified only when every weight has been read
    and validated.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    FormatError
        Unreadable/foreign/corrupted file, or missing, unexpected or misshaped weights
        (naming the key and both shapes).
    """
    _module_check(model, "load_weights")
    with _Reader(path) as r:
        state = _guard(r.path, lambda: _read_validated(r, model))
    model.load_state_dict(state, strict=True)

