"""Layers with hand-written backward passes, and the containers that chain them.

Every layer has ``forward``/``backward``/``parameters``/``train``/``eval``/``state_dict``/
``load_state_dict`` and PyTorch's default initialisation.  The losses are re-exported here
(``nn.CrossEntropyLoss``, ``nn.MSELoss``, ``nn.BCEWithLogitsLoss``, ...) as in PyTorch.
"""

from .config import from_config, register, to_config
from ..losses import *  # noqa: F403
from ..losses import __all__ as _losses
from .activations import *  # noqa: F403
from .activations import __all__ as _activations
from .containers import Add, Concat, Graph, Identity, ModuleList, Sequential
from .layers import *  # noqa: F403
from .layers import __all__ as _layers
from .norms import *  # noqa: F403
from .norms import __all__ as _norms
from .pooling import *  # noqa: F403
from .pooling import __all__ as _pooling
from .upsample import *  # noqa: F403
from .upsample import __all__ as _upsample
from .conv_transpose import *  # noqa: F403
from .conv_transpose import __all__ as _conv_transpose
from .module import (
    Module,
    Parameter,
    default_rng,
    enable_grad,
    is_grad_enabled,
    manual_seed,
    no_grad,
)
from .summary import summary
from . import init, utils

__all__ = _layers + _conv_transpose + _pooling + _norms + _activations + _upsample + [
    "Add", "Concat", "Graph", "Identity", "ModuleList", "Sequential", "Module", "Parameter",
    "no_grad", "enable_grad", "is_grad_enabled", "manual_seed", "default_rng", "register",
    "to_config", "from_config", "summary", "CrossEntropyLoss", "MSELoss", "L1Loss",
    "init", "utils",
]
__all__ += [name for name in _losses if name not in __all__]
