"""hgzoo: PaddleClas's efficient backbones in PyTorch, at exact parity with PaddleClas."""
from . import models  # noqa: F401  (registers every model)
from ._builder import create_model, load_checkpoint
from ._registry import get_pretrained_cfg, is_model, list_models, list_pretrained
from .deploy import reparameterize
from .predict import predict
from .pretrained import PretrainedCfg

__version__ = "0.1.0"
__all__ = [
    "create_model", "list_models", "list_pretrained", "is_model", "get_pretrained_cfg", "load_checkpoint",
    "reparameterize", "PretrainedCfg", "predict",
]
