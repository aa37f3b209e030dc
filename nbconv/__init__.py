"""nbconv: convolutional neural networks whose hot loops are Numba kernels.

>>> import numpy as np, nbconv as nc
>>> x = np.ones((1, 1, 4, 4), np.float32)
>>> nc.conv2d(x, np.ones((2, 1, 3, 3), np.float32)).shape
(1, 2, 2, 2)
"""

from . import functional
from ._config import get_num_threads, max_num_threads, set_num_threads
from .functional import *  # noqa: F403

__version__ = "0.1.0"

__all__ = functional.__all__ + ["functional", "set_num_threads", "get_num_threads",
                                "max_num_threads"]
