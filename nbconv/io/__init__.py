"""Model files: HDF5 with the architecture as JSON, checksummed weights, optimizer state, metadata.

``save``/``load``/``load_state`` write and read whole models (the architecture is rebuilt from
the file alone); ``save_weights``/``load_weights`` move only the state dict.  Writes are atomic
(temporary file, fsync, ``os.replace``); reads never execute code from the file (no pickle,
JSON only) and turn every malformed, truncated, corrupted or foreign file into
:class:`FormatError`.  The layout is documented in :mod:`nbconv.io.hdf5`, whole models in
:mod:`nbconv.io.model_file`.  h5py is imported
only when a file is read or written.
"""

from .hdf5 import FORMAT, FORMAT_VERSION, FormatError, load_weights, save_weights
from .model_file import load, load_state, save

__all__ = ["save", "load", "load_state", "save_weights", "load_weights", "FormatError",
           "FORMAT", "FORMAT_VERSION"]
