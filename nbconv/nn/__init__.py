"""Layers with hand-written backward passes, and the containers that chain them.

Every layer has ``forward``/``backward``/``parameters``/``train``/``eval``/``state_dict``/
``load_state_dict`` and PyTorch's default initialisation.
"""

from .config import from_config, register, to_config
from .containers import Add, Concat, Graph, Sequential
from .layers import *  # noqa: F403
from .layers import __all__ as _layers
from .module import Module, Parameter, default_rng, is_grad_enabled, manual_seed, no_grad

__all__ = _layers + [
    "Add", "Concat", "Graph", "Sequential", "Module", "Parameter", "no_grad",
    "is_grad_enabled", "manual_seed", "default_rng", "register", "to_config", "from_config",
]
