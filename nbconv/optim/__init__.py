"""Optimizers and learning-rate schedulers with PyTorch's names, arguments and update rules.

``nbconv.optim.SGD``, ``Adam``, ``AdamW`` and ``RMSprop`` (:mod:`nbconv.optim.optimizers`)
take parameters or parameter groups and have ``step``/``zero_grad``/``state_dict``/
``load_state_dict``/``add_param_group``; :mod:`nbconv.optim.lr_scheduler` changes their groups'
learning rates over the epochs or batches (``StepLR``, ``CosineAnnealingLR``, ``OneCycleLR``,
``ReduceLROnPlateau``, ...).
"""

from . import lr_scheduler
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler"]
