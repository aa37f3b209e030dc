"""The NumPy-like functional API: plain ndarrays in, plain ndarrays out.

Every public op validates its arguments (``nbconv._shapes``), allocates its output in the input's
dtype, picks an algorithm and calls a numba kernel from ``nbconv.kernels``.  No loops over pixels
live in this package.
"""

from .activation import *  # noqa: F403
from .conv import *  # noqa: F403
from .correlate import *  # noqa: F403
from .linear import *  # noqa: F403
from .norm import *  # noqa: F403
from .pool import *  # noqa: F403
from . import activation, conv, correlate, linear, norm, pool
from .._shapes import conv_output_size

__all__ = (
    activation.__all__
    + conv.__all__
    + correlate.__all__
    + linear.__all__
    + norm.__all__
    + pool.__all__
    + ["conv_output_size"]
)
