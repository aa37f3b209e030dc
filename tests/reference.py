"""Slow, independent references for nbconv's ops: explicit loops and scipy.signal.

This module never imports nbconv.  Each area keeps its references in its own
``reference_<area>.py``; they are gathered here so tests can ``import reference``.
"""

from reference_activation import *  # noqa: F403
from reference_conv import *  # noqa: F403
from reference_correlate import *  # noqa: F403
from reference_im2col import *  # noqa: F403
from reference_norm import *  # noqa: F403
from reference_pool import *  # noqa: F403
