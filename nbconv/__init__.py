"""nbconv: convolutional neural networks whose hot loops are Numba kernels.

The NumPy-like functional API lives at the top level (``nbconv.conv2d``, ``nbconv.max_pool2d``,
...; also ``nbconv.functional``); layers in ``nbconv.nn``; ``nbconv.losses``, ``nbconv.optim``,
``nbconv.data``, ``nbconv.models``, ``nbconv.train``; model files in ``nbconv.io``
(``nbconv.save`` / ``nbconv.load``).

>>> import numpy as np, nbconv as nc
>>> x = np.ones((1, 1, 4, 4), np.float32)
>>> nc.conv2d(x, np.ones((2, 1, 3, 3), np.float32)).shape
(1, 2, 2, 2)
"""

from ._version import __version__

from . import _compile_notice, _compile_options, functional
from ._config import get_num_threads, max_num_threads, set_num_threads
from .functional import *  # noqa: F403
from . import conv, cuda, data, io, losses, models, nn, optim, recording, train
from .io import load, load_state, save
from .conv.tune import tune
from . import onnx  # imports no onnx; registers the layers an imported ONNX graph may hold
from .nn import enable_grad, manual_seed, no_grad
from . import inference
from .inference import CompiledModel, compile  # noqa: A004  (nbconv.compile, as torch.compile)

_compile_notice.install()
_compile_options.install()

__all__ = functional.__all__ + [
    "functional", "set_num_threads", "get_num_threads", "max_num_threads", "cuda",
    "data", "io", "losses", "models", "nn", "optim", "recording", "train",
    "save", "load", "load_state", "manual_seed", "no_grad", "enable_grad", "__version__",
    "tune", "conv", "inference", "CompiledModel",
]  # (not "compile": ``from nbconv import *`` must not hide Python's builtin compile)
