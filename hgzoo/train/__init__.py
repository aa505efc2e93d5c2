"""Training with PaddleClas's recipes: ``train.py`` is a thin CLI over :func:`run`."""
from .config import DEFAULTS, ConfigError, TrainConfig, find_recipe, load_recipe, resolve_config
from .engine import plot_summary, run
from .optim import LRSchedule, create_optimizer, freeze_units, param_groups, stage_units
from .utils import DistillationLoss, ModelEMA, atomic_save

__all__ = ["TrainConfig", "DEFAULTS", "ConfigError", "find_recipe", "load_recipe", "resolve_config", "run",
           "plot_summary", "LRSchedule", "create_optimizer", "freeze_units", "param_groups", "stage_units",
           "DistillationLoss", "ModelEMA", "atomic_save"]
