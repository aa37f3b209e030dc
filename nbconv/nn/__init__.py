"""Layers with hand-written backward passes, and the containers that chain them.

Every layer has ``forward``/``backward``/``parameters``/``train``/``eval``/``state_dict``/
``load_state_dict`` and PyTorch's default initialisation.  The losses are re-exported here
(``nn.CrossEntropyLoss``, ``nn.MSELoss``, ``nn.L1Loss``) as in PyTorch.
"""

from .config import from_config, register, to_config
from ..losses import CrossEntropyLoss, L1Loss, MSELoss
from .activations import *  # noqa: F403
from .activations import __all__ as _activations
from .containers import Add, Concat, Graph, Identity, ModuleList, Sequential
from .layers import *  # noqa: F403
from .layers import __all__ as _layers
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

__all__ = _layers + _activations + [
    "Add", "Concat", "Graph", "Identity", "ModuleList", "Sequential", "Module", "Parameter",
    "no_grad", "enable_grad", "is_grad_enabled", "manual_seed", "default_rng", "register",
    "to_config", "from_config", "summary", "CrossEntropyLoss", "MSELoss", "L1Loss",
]
