"""The NumPy-like functional API: plain ndarrays in, plain ndarrays out.

Every public op validates its arguments (``nbconv._checks``), allocates its output in the input's
dtype, picks an algorithm and calls a numba kernel from ``nbconv.kernels``.  No loops over pixels
live in this package.
"""

from . import activation as _activation
from . import adaptive_pool as _adaptive_pool
from . import channel_dropout as _channel_dropout
from . import activation_ext as _activation_ext
from . import conv as _conv
from . import conv_transpose as _conv_transpose
from . import correlate as _correlate
from . import interpolate as _interpolate
from . import linear as _linear
from . import norm as _norm
from . import norms as _norms
from . import pool as _pool
from . import pool1d as _pool1d
from . import shape as _shape
from .._checks import conv_output_size

# Star imports after the module imports: ``nbconv.functional.linear`` is the function.
from .activation import *  # noqa: F403
from .adaptive_pool import *  # noqa: F403
from .channel_dropout import *  # noqa: F403
from .activation_ext import *  # noqa: F403
from .conv import *  # noqa: F403
from .conv_transpose import *  # noqa: F403
from .correlate import *  # noqa: F403
from .interpolate import *  # noqa: F403
from .linear import *  # noqa: F403
from .norm import *  # noqa: F403
from .norms import *  # noqa: F403
from .pool import *  # noqa: F403
from .pool1d import *  # noqa: F403
from .shape import *  # noqa: F403

__all__ = (
    _activation.__all__
    + _activation_ext.__all__
    + _conv.__all__
    + _conv_transpose.__all__
    + _correlate.__all__
    + _linear.__all__
    + _norm.__all__
    + _norms.__all__
    + _pool.__all__
    + _shape.__all__
    + _adaptive_pool.__all__
    + _channel_dropout.__all__
    + _pool1d.__all__
    + _interpolate.__all__
    + ["conv_output_size"]
)
